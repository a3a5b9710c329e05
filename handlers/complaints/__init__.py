"""Filing a complaint in the private chat: the step-by-step flow, free of Telegram (``flow``),
and its ConversationHandler, whose state lives in the database (``telegram``)."""
