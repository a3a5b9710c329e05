"""Answers from the knowledge base: the operator's files and their reloading (``kb``), matching
a question in the customer's words (``matching``), the rules of answering, feedback and the
hand-off to a person (``answering``), and their Telegram edge (``telegram``)."""
