"""The customer's private chat outside tickets: ``/start``, language, consent, ``/profile``,
``/stop`` and the answers to profile questions (``registration``), linking the shop's customer
record (``linking``), ``/forget`` and the operator's export (``privacy``), and their Telegram
edge (``telegram``). Where free text goes is decided by ``handlers.route``."""
