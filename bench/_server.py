"""Run the local Bot API server in its own process, as Telegram would be: on another machine."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import signal
from dataclasses import dataclass


@dataclass
class ServerProcess:
    process: multiprocessing.process.BaseProcess
    root_url: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


def _serve(token: str, user_ids: range, connection: multiprocessing.connection.Connection) -> None:
    from bot.sandbox.api import LocalBotApi

    async def main() -> None:
        api = LocalBotApi(token)
        for user_id in user_ids:
            api.add_user(user_id, f"Customer {user_id}", language_code="en")
        root = await api.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        connection.send(root)
        await stop.wait()
        await api.stop()

    asyncio.run(main())


def start_server(token: str, user_ids: range) -> ServerProcess:
    """Start the server in a child process with ``user_ids`` registered; returns its root URL."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(token, user_ids, child), daemon=True)
    process.start()
    if not parent.poll(60):
        process.terminate()
        raise RuntimeError("local Bot API server did not start")
    return ServerProcess(process, parent.recv())
