# carebot: one process, long polling by default (no public HTTPS needed), SQLite on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CAREBOT_DATABASE_URL=sqlite+aiosqlite:////data/carebot.db

RUN useradd --create-home --uid 10001 carebot \
    && mkdir -p /data \
    && chown carebot:carebot /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY surveys ./surveys
COPY storage ./storage
COPY scheduler ./scheduler
COPY dashboard ./dashboard
RUN pip install --no-cache-dir .

USER carebot
VOLUME ["/data"]
# Webhook mode (CAREBOT_WEBHOOK_URL set) listens here, with /healthz, /readyz, /metrics and
# the dashboard on the same port.
EXPOSE 8080
CMD ["carebot", "run"]
