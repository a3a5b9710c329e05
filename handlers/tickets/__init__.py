"""The ticket desk's Telegram edge (``telegram``: the desk of this bot, messages as plain
values, waking the dispatcher, button callbacks). Its rules are still ``handlers.tickets_rules``
(to be split along its seams into this package)."""
