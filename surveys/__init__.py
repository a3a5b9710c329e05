"""Satisfaction surveys (README: Satisfaction surveys): sending them (``planner``), the
question flow and recovery tickets (``flow``), their SQL (``queries``) and the reports and churn
signal (``analytics``); the survey files' schema is ``bot.kernel.survey_config``. Telegram-free:
``handlers.surveys.telegram`` carries the chat part."""
