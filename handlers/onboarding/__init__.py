"""The customer's private chat outside tickets: ``/start``, language, consent, ``/profile``,
``/stop`` and where free text goes (``registration``), linking the shop's customer record
(``linking``), ``/forget`` and the operator's export (``privacy``), and their Telegram edge
(``telegram``)."""
