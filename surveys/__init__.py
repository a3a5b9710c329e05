"""Satisfaction surveys (issue 8): definitions from files (``definitions``), sending them
(``planner``), the question flow and recovery tickets (``flow``), their SQL (``queries``) and
the reports and churn signal (``analytics``). Telegram-free: ``handlers.surveys`` carries the
chat part."""
