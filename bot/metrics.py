"""Prometheus metrics and the per-update trace (README: Operations).

Every update goes through ``BotMetrics.observe_update`` (the update processor's observer): it
counts the update, times it, and writes ONE log line with its id, the handler that handled it,
the duration and the result. Which handler ran is known because ``instrument_handlers`` wraps
every registered callback so that it names itself in the update's trace. Figures that live in
the database (outbox depth, open tickets, SLA breaches) are read when ``/metrics`` is scraped;
the dispatcher's send results come from its own counters.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    BaseHandler,
    CommandHandler,
    ConversationHandler,
)

from dashboard import queries
from scheduler.dispatcher.outcomes import DispatchCounters

logger = logging.getLogger("carebot.updates")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NO_HANDLER = "none"

Callback = Callable[..., Coroutine[Any, Any, Any]]


@dataclass
class UpdateTrace:
    """What happened to one update: the callbacks that ran, in order, and whether one failed."""

    handlers: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def handler(self) -> str:
        """The last callback that ran: the feature's, after the inbound journal's."""
        return self.handlers[-1] if self.handlers else NO_HANDLER

    @property
    def result(self) -> str:
        if self.failed:
            return "error"
        return "handled" if self.handlers else "ignored"


_TRACE: ContextVar[UpdateTrace | None] = ContextVar("carebot_update_trace", default=None)


def handler_name(handler: BaseHandler[Any, Any, Any]) -> str:
    """``staff.command``: the callback's module (last part) and name; a closure made by a
    factory (``onboarding.on_person``) is named by its commands instead: ``onboarding./help``.
    A bounded set, fit for a metric label."""
    callback = getattr(handler, "callback", None)
    parts = str(getattr(callback, "__module__", "") or "").split(".")
    # A feature's Telegram edge (handlers.onboarding.telegram) is named by its feature.
    module = parts[-2] if len(parts) > 2 and parts[-1] == "telegram" else parts[-1]
    name = str(getattr(callback, "__qualname__", type(handler).__name__))
    if "<locals>" in name and isinstance(handler, CommandHandler):
        return f"{module}./{','.join(sorted(handler.commands))}"
    return f"{module}.{name.replace('.<locals>.', ':')}"


def traced(callback: Callback, name: str) -> Callback:
    """``callback``, naming itself in the current update's trace (and marking it failed when
    it raises; the error handler still gets the exception)."""

    @functools.wraps(callback)
    async def run(*args: Any, **kwargs: Any) -> Any:
        trace = _TRACE.get()
        if trace is not None:
            trace.handlers.append(name)
        try:
            return await callback(*args, **kwargs)
        except ApplicationHandlerStop:
            raise
        except Exception:
            if trace is not None:
                trace.failed = True
            raise

    run.__carebot_traced__ = True  # type: ignore[attr-defined]
    return run


def _all_handlers(
    handlers: list[BaseHandler[Any, Any, Any]],
) -> Iterator[BaseHandler[Any, Any, Any]]:
    for handler in handlers:
        if isinstance(handler, ConversationHandler):
            yield from _all_handlers(list(handler.entry_points))
            for state in handler.states.values():
                yield from _all_handlers(list(state))
            yield from _all_handlers(list(handler.fallbacks))
        else:
            yield handler


def instrument_handlers(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Wrap every registered callback (also inside conversations) with ``traced``; once."""
    for group in application.handlers.values():
        for handler in _all_handlers(list(group)):
            callback = getattr(handler, "callback", None)
            if callback is not None and not getattr(callback, "__carebot_traced__", False):
                handler.callback = traced(callback, handler_name(handler))


class _SendsCollector(Collector):
    """The dispatcher's counters (sends by result, 429s), read at scrape time."""

    def __init__(self) -> None:
        self.counters: DispatchCounters | None = None

    def collect(self) -> Iterator[Metric]:
        counters = self.counters or DispatchCounters()
        sends = CounterMetricFamily(
            "carebot_outbox_sends",
            "Outbox send attempts by result (sent, failed, dead, retried, rate_limited, deferred, "
            "unreachable)",
            labels=["result"],
        )
        for item in fields(counters):
            sends.add_metric([item.name], getattr(counters, item.name))
        yield sends
        yield CounterMetricFamily(
            "carebot_telegram_429",
            "Times Telegram answered 429 Too Many Requests to the dispatcher",
            value=counters.rate_limited,
        )


class BotMetrics:
    """One process's metrics, in their own registry (several bots in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.updates = Counter(
            "carebot_updates_handled",
            "Updates handled, by the handler that handled them and the result",
            ["handler", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "carebot_handler_seconds",
            "Time to handle one update, by handler",
            ["handler"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_rows = Gauge(
            "carebot_outbox_rows", "Outbox rows by state", ["state"], registry=self.registry
        )
        self.tickets_open = Gauge(
            "carebot_tickets_open",
            "Tickets not yet closed, by status",
            ["status"],
            registry=self.registry,
        )
        self.sla_breaches = Gauge(
            "carebot_sla_breaches",
            "Open tickets past a deadline they have not met, by deadline",
            ["deadline"],
            registry=self.registry,
        )
        self._sends = _SendsCollector()
        self.registry.register(self._sends)

    def watch_dispatcher(self, counters: DispatchCounters) -> None:
        """Report this dispatcher's send results."""
        self._sends.counters = counters

    async def observe_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Handle one update (``coroutine``), counting, timing and logging it."""
        trace = UpdateTrace()
        token = _TRACE.set(trace)
        started = time.perf_counter()
        try:
            await coroutine
        except Exception:
            trace.failed = True
            raise
        finally:
            _TRACE.reset(token)
            seconds = time.perf_counter() - started
            self.updates.labels(trace.handler, trace.result).inc()
            self.latency.labels(trace.handler).observe(seconds)
            update_id = getattr(update, "update_id", None)
            logger.info(
                "update handled",  # the fields say which, by what, how long and how it went
                extra={
                    "update_id": update_id,
                    "handler": trace.handler,
                    "duration_ms": round(seconds * 1000, 3),
                    "result": trace.result,
                },
            )

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> None:
        """Read the figures that live in the database (at scrape time)."""
        async with sessionmaker() as session:
            depth = await queries.outbox_depth(session)
            open_tickets = await queries.open_tickets_by_status(session)
            breaches = await queries.sla_breaches(session, now)
        _set_all(self.outbox_rows, depth)
        _set_all(self.tickets_open, open_tickets)
        _set_all(
            self.sla_breaches,
            {"first_response": breaches.first_response, "resolution": breaches.resolution},
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _set_all(gauge: Gauge, values: dict[str, int]) -> None:
    gauge.clear()  # a state with no rows left reads 0 (labels below are always present)
    for label, value in values.items():
        gauge.labels(label).set(value)
