"""Idle memory of ``carebot run``: the resident set of the real process, started twice on one
empty SQLite database (the first start migrates it), each time read after it settled.

    python bench/idle_rss.py              # settle 15 s
    python bench/idle_rss.py --settle 30

The local Bot API server runs in its own process (long polling against it, as against
Telegram); the figure is the bot process's ``VmRSS`` from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import start_server

TOKEN = "123456:BENCH-TOKEN"
CAREBOT = [sys.executable, "-c", "from bot.cli import main; main()"]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before reading")
    args = parser.parse_args()
    server = start_server(TOKEN, range(1, 2))
    workdir = Path(tempfile.mkdtemp(prefix="carebot-rss-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAREBOT_")}
    env.update(
        CAREBOT_TELEGRAM_TOKEN=TOKEN,
        CAREBOT_TELEGRAM_API_URL=server.root_url,
        CAREBOT_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'carebot.db'}",
        CAREBOT_LOG_LEVEL="WARNING",
    )
    try:
        for label in ("first start (migrates the new database)", "second start (schema current)"):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from bot.cli import main; main()",
                "run",
                env=env,
                cwd=workdir,
            )
            await asyncio.sleep(args.settle)
            if process.returncode is not None:
                raise RuntimeError(f"carebot run exited with {process.returncode}")
            print(f"{label:<42} VmRSS {_rss_mib(process.pid):6.1f} MiB")
            process.terminate()
            await process.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
