"""The emulated Bot API methods, one mixin per area: ``posting`` (what sending shares),
``files``, ``messages``, ``edits``, ``callbacks``, ``chats``, ``forum`` and ``profile``. Each
mixin lists its methods in a ``_<area>_handlers()`` table; ``getUpdates`` and the webhook
methods live in ``bot.sandbox.server``."""
