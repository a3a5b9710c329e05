"""Several ``carebot run`` processes in webhook mode behind a round-robin load balancer, talking
to a local Bot API server that runs in the calling process (tests/test_scale_out.py and
bench/scale.py)."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.sandbox.api import LocalBotApi
from bot.sandbox.protocol import SECRET_HEADER
from bot.settings import EXAMPLE_CONFIG_DIR
from tests.auxil.processes import free_port, start_carebot

WEBHOOK_PATH = "/telegram/hook"
SECRET = "cluster-test-secret"

# The shipped outbox.toml with Telegram's limits lifted and short waits: what is measured is
# the bots' handling, not the pacing of the staff group.
FAST_OUTBOX = """
[retry]
backoff_base_seconds = 0.05
backoff_max_seconds = 0.2

[dispatch]
poll_seconds = 0.05
lease_seconds = 30

[limits]
per_second = 1000
per_private_chat_second = 1000
per_group_minute = 10000
"""


def fast_config(directory: Path) -> Path:
    """A copy of the shipped rule files with :data:`FAST_OUTBOX`."""
    shutil.copytree(EXAMPLE_CONFIG_DIR, directory)
    (directory / "outbox.toml").write_text(FAST_OUTBOX, encoding="utf-8")
    return directory


@dataclass
class BotProcess:
    process: asyncio.subprocess.Process
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def stop(self) -> int:
        """SIGTERM, as a process manager stops it; returns the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            return await self.process.wait()


@dataclass
class RoundRobin:
    """A load balancer: each webhook POST goes to the next bot in turn, and Telegram gets the
    bot's answer."""

    ports: list[int] = field(default_factory=list)
    forwarded: dict[int, int] = field(default_factory=dict)  # POSTs by port
    url: str = ""
    _runner: web.AppRunner | None = None
    _client: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        turns = itertools.count()
        self._client = aiohttp.ClientSession(
            trust_env=False, timeout=aiohttp.ClientTimeout(total=60)
        )

        async def forward(request: web.Request) -> web.Response:
            port = self.ports[next(turns) % len(self.ports)]
            self.forwarded[port] = self.forwarded.get(port, 0) + 1
            assert self._client is not None
            async with self._client.post(
                f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
                data=await request.read(),
                headers={
                    "Content-Type": "application/json",
                    SECRET_HEADER: request.headers.get(SECRET_HEADER, ""),
                },
            ) as answer:
                return web.Response(status=answer.status, body=await answer.read())

        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        return self.url

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()


async def start_bot(
    api: LocalBotApi,
    *,
    database_url: str,
    webhook_url: str,
    config_dir: Path,
    staff_chat_id: int,
    log: Path,
) -> BotProcess:
    """``carebot run`` in webhook mode as its own process, on a port of its own."""
    port = free_port()
    process = await start_carebot(
        "run",
        log=log,
        telegram_token=api.token,
        telegram_api_url=api.root_url,
        database_url=database_url,
        config_dir=str(config_dir),
        staff_chat_id=str(staff_chat_id),
        webhook_url=webhook_url,
        webhook_secret=SECRET,
        listen_host="127.0.0.1",
        listen_port=str(port),
        log_level="WARNING",
    )
    return BotProcess(process, port, log)


async def wait_until_serving(bot: BotProcess, seconds: float = 60) -> None:
    """Wait for the process's /healthz (it listens once its webhook is set up)."""
    async with aiohttp.ClientSession(trust_env=False) as client:
        for _ in range(int(seconds * 10)):
            if bot.process.returncode is not None:
                raise AssertionError(f"bot exited with {bot.process.returncode}:\n{bot.output()}")
            try:
                async with client.get(f"http://127.0.0.1:{bot.port}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"bot did not start:\n{bot.output()}")


@asynccontextmanager
async def cluster(
    api: LocalBotApi,
    *,
    replicas: int,
    database_url: str,
    workdir: Path,
    staff_chat_id: int,
    config_dir: Path | None = None,
) -> AsyncIterator[tuple[RoundRobin, list[BotProcess]]]:
    """``replicas`` bot processes on one (migrated) database behind a :class:`RoundRobin`,
    with the local server's webhook pointing at the balancer, with the rule files in
    ``config_dir`` (default: :func:`fast_config`). Stopped cleanly on exit."""
    config_dir = config_dir or fast_config(workdir / "config")
    balancer = RoundRobin()
    url = await balancer.start()
    bots: list[BotProcess] = []
    try:
        for number in range(replicas):
            bots.append(
                await start_bot(
                    api,
                    database_url=database_url,
                    webhook_url=url,
                    config_dir=config_dir,
                    staff_chat_id=staff_chat_id,
                    log=workdir / f"bot{number}.log",
                )
            )
        balancer.ports.extend(bot.port for bot in bots)
        for bot in bots:
            await wait_until_serving(bot)
        yield balancer, bots
    finally:
        codes = [await bot.stop() for bot in bots]
        await balancer.stop()
        failed = [bot.output()[-3000:] for bot, code in zip(bots, codes, strict=True) if code]
        assert not failed, "a bot did not stop cleanly:\n" + "\n".join(failed)
