"""Loyalty points on the customer's side: ``/points`` and ``/redeem`` (the rules: ``points``;
on Telegram: ``telegram``; the balance replayed from the ledger: ``ledger``). Earning, taking
back, expiry and reminders are ``scheduler.points``; the rules of ``loyalty.toml`` are
``bot.kernel.loyalty_config``."""
