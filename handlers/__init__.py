"""The conversations, one package per feature: each holds its rules, free of Telegram (plain
values and a session in, replies out), and its Telegram edge (``telegram``: thin PTB callbacks
that parse the update, call a rule and send what it returns). ``answers``, ``care``,
``complaints``, ``onboarding``, ``staff``, ``surveys`` (the buttons), ``tickets``; ``_edge``
is what the edges share. Handlers import the kernel (``bot.kernel``), ``storage``, ``surveys``
and the dashboard's sign-in; never the composition root (the rest of ``bot``)."""
