"""Running the ``carebot`` command in a child process, with only the settings a test gives."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

CAREBOT = [sys.executable, "-c", "from bot.cli import main; main()"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def carebot_env(**settings: str) -> dict[str, str]:
    """This process's environment without its ``CAREBOT_*`` variables, plus ``settings``
    (``database_url="..."`` becomes ``CAREBOT_DATABASE_URL``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
    env.update({f"CAREBOT_{name.upper()}": value for name, value in settings.items()})
    return env


async def start_carebot(*args: str, log: Path, **settings: str) -> asyncio.subprocess.Process:
    """``carebot ARGS`` in the background, in ``log``'s folder, its output into ``log``."""
    with log.open("wb") as sink:
        return await asyncio.create_subprocess_exec(
            *CAREBOT, *args, env=carebot_env(**settings), cwd=log.parent, stdout=sink, stderr=sink
        )
