# carebot: one process, long polling by default (no public HTTPS needed), SQLite on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CAREBOT_DATABASE_URL=sqlite+aiosqlite:////data/carebot.db \
    CAREBOT_SERVE_WEB=true

RUN useradd --create-home --uid 10001 carebot \
    && mkdir -p /data \
    && chown carebot:carebot /data

WORKDIR /app
# The dependencies first, in their own layer: rebuilt only when pyproject.toml changes, not at
# every change of the source.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY surveys ./surveys
COPY storage ./storage
COPY scheduler ./scheduler
COPY dashboard ./dashboard
RUN pip install --no-cache-dir --no-deps .

USER carebot
VOLUME ["/data"]
# /healthz, /readyz (database reachable, schema current, dispatcher running), /metrics, the
# dashboard and, in webhook mode (CAREBOT_WEBHOOK_URL set), the webhook: all on this port.
# Long polling serves them too (CAREBOT_SERVE_WEB above); nothing needs to be published.
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('CAREBOT_LISTEN_PORT', '8080'), timeout=4)"
CMD ["carebot", "run"]
