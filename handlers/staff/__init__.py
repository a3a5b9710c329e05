"""The staff group: commands and messages in ticket topics, membership, ``/dashboard``
(``commands``: the rules; ``telegram``: the edge, which asks Telegram who is a member)."""
