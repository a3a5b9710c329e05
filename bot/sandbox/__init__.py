"""The sandbox: a local Telegram Bot API server for tests, benchmarks and ``carebot demo``.

``bot.sandbox.api.LocalBotApi`` is the facade; it is composed of the parts in this package:
``server`` (HTTP, update delivery), ``methods`` (the emulated Bot API methods), ``entities``
(HTML/MarkdownV2/Markdown parsing), ``actors`` and ``cast`` (the users and groups tests play),
``faults`` (injected errors), ``observe`` (reading and waiting for what the bot did),
``records`` (the public records) and ``core`` (the shared state).
"""
