"""The staff dashboard (README: The staff dashboard): pages under ``/dashboard`` on the bot's
aiohttp server.

Pages: overview, tickets (list, filters, one ticket's history), satisfaction, customers and
outbox; charts drawn in the browser by the vendored Chart.js (``static/``, no CDN); English
and Chinese (``catalogue/``). Nothing here imports ``telegram``: signing in is a one-time link
the bot mints (``dashboard.auth``), and everything else is read from the database.
"""

from dashboard.core import Dashboard
from dashboard.pages import mount

__all__ = ["Dashboard", "mount"]
