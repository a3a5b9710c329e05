"""Scale-out: the same webhook load against one ``carebot run`` process and against two, on
one PostgreSQL database, behind a round-robin balancer.

    python bench/scale.py                                  # 2 x 3 runs, the README's figures
    python bench/scale.py --customers 20 --messages 10     # a quicker look

The local Bot API server (Telegram's side) and the customers run in this process; each bot is
its own ``carebot run`` process in webhook mode (as in production). Every virtual customer
sends ``--messages`` knowledge-base questions, each once the previous one is answered (closed
loop); latency is from the update's creation to the reply's arrival at the server. Runs of one
and two processes alternate, so both see the same machine load; the ratio compares them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._databases import scratch_database
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser
from tests.auxil.cluster import cluster

TOKEN = "123456:BENCH-TOKEN"
STAFF_CHAT_ID = -1001555000002
QUESTIONS = [
    "Where is my parcel?",
    "how do I return something",
    "what payment methods do you accept",
    "how long does shipping take",
]


async def _customer(
    api: LocalBotApi, user: FakeUser, messages: int, latencies: list[float]
) -> None:
    await api.send_text(user, "/start")
    await api.wait_for_sent(user.id, 2, timeout=120)  # greeting and consent question
    for number in range(messages):
        started = time.perf_counter()
        await api.send_text(user, QUESTIONS[(user.id + number) % len(QUESTIONS)])
        await api.wait_for_sent(user.id, 3 + number, timeout=120)
        latencies.append(time.perf_counter() - started)


async def _run(
    replicas: int, customers: int, messages: int, database_url: str
) -> dict[str, float]:
    api = LocalBotApi(TOKEN)
    await api.start()
    api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
    users = [
        api.add_user(10_000 + n, f"Customer {n}", language_code="en") for n in range(customers)
    ]
    latencies: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            async with cluster(
                api,
                replicas=replicas,
                database_url=database_url,
                workdir=Path(workdir),
                staff_chat_id=STAFF_CHAT_ID,
            ):
                # Registration is not measured: every customer says /start first.
                started = time.perf_counter()
                await asyncio.gather(*(_customer(api, u, messages, latencies) for u in users))
                elapsed = time.perf_counter() - started
    finally:
        await api.stop()
    ordered = sorted(latencies)
    return {
        "rate": len(latencies) / elapsed,
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--messages", type=int, default=40, help="questions per customer")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{args.customers} customers x {args.messages} questions, webhook mode, PostgreSQL; "
        f"{args.rounds} rounds of 1 and 2 processes, alternating"
    )
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(args.rounds):
            for replicas in (1, 2):
                async with scratch_database("postgresql", Path(directory), "scale") as url:
                    result = await _run(replicas, args.customers, args.messages, url)
                results[replicas].append(result)
                print(
                    f"  {replicas} process{'es' if replicas > 1 else '  '}: "
                    f"{result['rate']:7.1f} updates/s   p50 {result['p50']:6.1f} ms   "
                    f"p99 {result['p99']:7.1f} ms"
                )
    for replicas in (1, 2):
        rates = [r["rate"] for r in results[replicas]]
        p99s = [r["p99"] for r in results[replicas]]
        print(
            f"{replicas} process{'es' if replicas > 1 else '  '}: median "
            f"{statistics.median(rates):7.1f} updates/s, "
            f"p99 median {statistics.median(p99s):.1f} ms"
        )
    ratios = [two["rate"] / one["rate"] for one, two in zip(results[1], results[2], strict=True)]
    print(f"two / one, same round: {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    asyncio.run(main())
