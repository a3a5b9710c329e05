"""The staff dashboard (README: The staff dashboard): pages under ``/dashboard`` on the bot's
aiohttp server.

Pages: overview, tickets (list, filters, one ticket's history), satisfaction, customers and
outbox; charts drawn in the browser by the vendored Chart.js (``static/``, no CDN); English
and Chinese (``catalogue/``). Nothing here imports ``telegram``: signing in is a one-time link
the bot mints (``dashboard.auth``), and everything else is read from the database.

Two layers. Here, what knows nothing of HTTP requests and is used from outside too: the
configuration (``core``: ``Dashboard``), sign-in tokens, sessions and the signed cookie
(``auth``; the bot's ``/dashboard`` command mints links with it), the figures (``queries``;
``bot.metrics`` reuses them) and the HTML builders (``html``). In ``dashboard.pages``, the
aiohttp routes: a subpackage because its modules share one shape (a handler, let in by the
signed-in check, that asks the layer above for figures and renders them with ``html``) and
nothing outside it needs any of them but ``routes.mount`` (the web app and the demo call it).
Its modules, each importing only those before it: ``respond`` (the request's dashboard and
language, HTML responses), ``guard`` (the signed-in check, the security headers), ``signin``
(the link's page, signing in and out), one module per page group (``overview``, ``tickets``,
``satisfaction``, ``customers``, ``outbox``), and ``routes`` (the route table).
"""
