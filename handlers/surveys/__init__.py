"""The chat part of surveys: the answer buttons (``telegram``). The surveys themselves (what is
asked, when, the flow and recovery) are the top-level ``surveys`` package."""
