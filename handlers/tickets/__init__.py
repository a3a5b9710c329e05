"""The ticket desk, free of Telegram apart from its edge: its vocabulary and configuration
(``desk``), the customer card (``card``), what the dispatcher sends (``payloads``), the delivery
lanes that keep each direction in order (``lanes``), the out-of-hours reply
(``closed_hours``), a ticket's life (``lifecycle``), relaying
both ways (``relay``), what the dispatcher reports back (``outcomes``); and the Telegram edge
(``telegram``). Imported in that order: each module only imports those before it."""
