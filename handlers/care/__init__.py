"""The customer's side of care messages: the buttons under greetings and follow-up visits
(what they do: ``actions``; on Telegram: ``telegram``). What is sent and when is
``scheduler.care``; the rules of ``care.toml`` are ``bot.kernel.care_config``."""
