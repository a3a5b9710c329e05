"""The dashboard's aiohttp routes, one module per page group (``dashboard``'s docstring: why,
and the order they import each other in); ``routes.mount`` adds them to an app."""
