"""The database: models, the engine and its SQLite driver, Alembic migrations, and the queries,
one module (or package) per aggregate: customers, orders, tiers, tickets, the inbox, the outbox
and its payloads, care, the knowledge base. Imports only the kernel (``bot.kernel``): every
other package builds on it. See the README's Layout section."""
