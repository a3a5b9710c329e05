"""What runs on its own: the APScheduler wiring and the planners (care, SLA, tiers, surveys, the
staff group's refresh), and the outbox dispatcher (``scheduler.dispatcher``, the only module
here with Telegram). Imports the kernel, ``storage``, ``surveys`` and the handlers' cores, never
their Telegram edges. See the README's Layout section."""
