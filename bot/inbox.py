"""The inbox: every update is committed before Telegram is told it arrived, then handled from
there exactly once (design, Principle 2). The outbox's mirror.

**Receiving.** In long polling, carebot's own fetch loop stores each ``getUpdates`` batch in one
transaction and only then asks for the next offset, which is what confirms the batch to
Telegram: a crash before the commit makes Telegram send the batch again, and its ``update_id``
makes the second copy a no-op. In webhook mode the update is committed, then the ``200`` goes
back at once. Updates from chats that are neither private nor the staff group are not stored
(except ``/setup``, which makes a group the staff group); the first from each such group is
logged with the group's id and title.

**Updates that cannot be read.** An update PTB cannot parse (``Update.de_json`` raises: a
``chat`` that is a string, a ``date`` that is not a number) or that holds what cannot be stored
(a text that is not a string, a chat id that is not an integer) is stored parked at once, with
the error's type and nothing of what it says, and logged in one line naming its ``update_id``:
no rule runs on it, it is not tried again, its conversation goes on, and the offset moves past
it. ``carebot inbox failed`` lists it; ``carebot inbox retry`` reads it again (after an
upgrade). An item without a usable ``update_id`` cannot be stored at all and is skipped.

**Handling.** The updates of one conversation (a private chat, one topic of the staff group) are
handled one after another in arrival order, different conversations concurrently. The updates
of a conversation waiting together run in one unit of work (``storage.engine.Sessions.unit``):
their rules' effects (ticket messages, outbox rows, state) and the mark "handled" commit in one
transaction, and what the rules answer goes out after the commit (``after_commit``). A crash at
any point replays exactly what had not committed. A batch whose rules fail rolls back and its
updates are tried one at a time; one that keeps failing is tried again with backoff and parked
after ``inbox.max_attempts`` (staff are told in the General topic), and its conversation goes on.

**Several processes (PostgreSQL).** Each process handles what it received. A conversation's unit
of work holds a transaction-level advisory lock on it, so two processes never handle one
conversation at once, and it skips what another process handled meanwhile. On start, and every
``inbox.sweep_seconds``, pending updates this process does not hold are picked up: those left by
a process that died, and those put back by ``carebot inbox retry``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    Conflict,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ExtBot

from bot.errors import log_update_error
from bot.kernel.clock import Clock
from bot.kernel.config import InboxConfig
from handlers._edge.inbound import ConversationKey, conversation_key, record_of
from handlers.tickets.desk import StaffGroup
from scheduler.dispatcher.telegram import retry_after_seconds
from storage import inbox as inbox_queries
from storage.engine import Sessions, UnitOfWork
from storage.inbox import Pending
from storage.staff_group import stored_staff_groups

logger = logging.getLogger(__name__)

POLL_TIMEOUT_SECONDS = 10
"""How long one ``getUpdates`` waits for something to arrive (long polling)."""
READ_MARGIN_SECONDS = 5.0
MAX_CONCURRENT_CONVERSATIONS = 64
MAX_RETRY_SECONDS = 60.0
FETCH_RETRY_FIRST_SECONDS = 1.0
FETCH_RETRY_MAX_SECONDS = 30.0
"""After a failed ``getUpdates`` (Telegram unreachable) or a batch that could not be stored,
the next try waits 1 s, then twice as long each time, at most 30 s."""
CONFIRM_TIMEOUT_SECONDS = 2.0
"""At stop, how long the last ``getUpdates`` (confirming the stored batch) may take: an
unconfirmed batch is only delivered again, and recognised by its ``update_id``."""
MAX_ID = 2**63 - 1
"""The inbox stores ids in 64-bit columns."""
MAX_FILE_ID_LENGTH = 256
MAX_UNKNOWN_GROUPS = 1000
"""Groups remembered as logged (then the memory starts over)."""
STAFF_GROUP_RECHECK_SECONDS = 2.0
"""How often at most an update from a group that is not the staff group makes the inbox read
the stored staff group again."""

Observer = Callable[[object, Awaitable[Any]], Awaitable[None]]
ParkedNotice = Callable[[AsyncSession, int, str, int, str, datetime], Awaitable[None]]
"""``(session, inbox id, kind, attempts, error, now)``: tell staff an update was parked."""


class InboxBot(ExtBot[None]):
    """PTB's bot, with ``getUpdates`` answered as raw JSON: the inbox stores each update as it
    came (and reads it back with ``Update.de_json``), without a round trip through PTB's
    objects."""

    async def fetch_updates(
        self, offset: int | None, wait_seconds: int, allowed_updates: Sequence[str]
    ) -> list[dict[str, Any]]:
        """``getUpdates`` from ``offset`` (which confirms everything before it to Telegram)."""
        result = await self._post(
            "getUpdates",
            {"offset": offset, "timeout": wait_seconds, "allowed_updates": list(allowed_updates)},
            read_timeout=wait_seconds + READ_MARGIN_SECONDS,
        )
        return cast(list[dict[str, Any]], result)


def _is_setup(update: Update) -> bool:
    """A ``/setup`` command (``/setup@bot`` too): how a group becomes the staff group."""
    message = update.message
    words = (message.text or "").split(maxsplit=1) if message is not None else []
    return bool(words) and words[0].split("@")[0].lower() == "/setup"


def update_id_of(raw: object) -> int | None:
    """The ``update_id`` of a raw update when it is one the inbox can store (an integer, not a
    bool, from 0 to ``MAX_ID``); None otherwise (not an update object at all)."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("update_id")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    return None


class UnreadableUpdate(ValueError):
    """PTB read the update, but what it holds cannot be stored or handled (a text that is not a
    string, an id that is not an integer); the message names the field, never its value."""


def _storable_id(value: object) -> bool:
    return value is None or (
        isinstance(value, int) and not isinstance(value, bool) and -MAX_ID <= value <= MAX_ID
    )


def _storable_text(value: object, *, limit: int | None = None) -> bool:
    if value is None:
        return True
    if not isinstance(value, str) or "\x00" in value or (limit and len(value) > limit):
        return False
    try:
        value.encode("utf-8")  # a lone surrogate from JSON cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def read_update(raw: dict[str, Any], bot: Any) -> tuple[Update, dict[str, Any]]:
    """The update and what the inbox records of it (``record_of`` with its conversation);
    raises when PTB cannot parse it or the record cannot be stored."""
    update = Update.de_json(raw, bot)
    record = record_of(update)
    chat_id, thread_id = conversation_key(update)
    record.update(chat_id=chat_id, thread_id=thread_id)
    for name in ("chat_id", "thread_id", "telegram_message_id", "sender_user_id"):
        if not _storable_id(record[name]):
            raise UnreadableUpdate(f"{name} is not an integer")
    if not _storable_text(record["text"]):
        raise UnreadableUpdate("text is not a string")
    if not _storable_text(record["media_file_id"], limit=MAX_FILE_ID_LENGTH):
        raise UnreadableUpdate("file_id is not a short string")
    if not isinstance(record["edited"], bool):
        raise UnreadableUpdate("edited is not a bool")
    return update, record


def _payload(raw: dict[str, Any]) -> str:
    """The raw update as stored JSON (escaped where it would not store as UTF-8 text)."""
    payload = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    try:
        payload.encode("utf-8")
    except UnicodeEncodeError:
        payload = json.dumps(raw, separators=(",", ":"))
    return payload


def _unreadable_row(
    raw: dict[str, Any], update_id: int, error: BaseException, now: datetime
) -> dict[str, Any]:
    """An unreadable update as the inbox keeps it: its chat and sender when they are readable
    ids (``/forget`` finds it by its sender), the raw update for a later retry, the error's
    type; no text."""
    chat_id = sender_user_id = None
    for value in raw.values():
        if not isinstance(value, dict):
            continue
        chat, sender = value.get("chat"), value.get("from")
        if chat_id is None and isinstance(chat, dict) and _storable_id(chat.get("id")):
            chat_id = chat.get("id")
        if sender_user_id is None and isinstance(sender, dict) and _storable_id(sender.get("id")):
            sender_user_id = sender.get("id")
    try:
        payload: str | None = _payload(raw)
    except (ValueError, RecursionError):  # nested too deep to write back
        payload = None
    return {
        "update_id": update_id,
        "chat_id": chat_id,
        "thread_id": None,
        "telegram_message_id": None,
        "sender_user_id": sender_user_id,
        "kind": inbox_queries.UNREADABLE_KIND,
        "text": None,
        "media_file_id": None,
        "edited": False,
        "received_at": now,
        "payload": payload,
        "error": _name(error),
    }


@dataclass(order=True)
class _Item:
    id: int
    update: Update = field(compare=False)


@dataclass
class _Conversation:
    items: list[_Item] = field(default_factory=list)
    """Waiting, in arrival (row id) order."""
    running: bool = False


class Inbox:
    """Stores what arrives, then handles it from the database (see the module docstring)."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        sessions: Sessions,
        *,
        clock: Clock,
        rules: InboxConfig,
        staff_group: StaffGroup,
        notify_parked: ParkedNotice | None = None,
        exclusive: bool = True,
    ) -> None:
        self._application = application
        self._sessions = sessions
        self._clock = clock
        self._rules = rules
        self._staff_group = staff_group
        """The desk's: ``/setup`` may change it while the inbox runs."""
        self._unknown_groups: set[int] = set()
        """Groups whose updates were ignored (and logged once)."""
        self._group_read_at = float("-inf")
        self.notify_parked = notify_parked
        self._exclusive = exclusive
        """SQLite: this process is the only one handling the database (no locks, no checks)."""
        self.observer: Observer | None = None
        """Wraps each update's handling (``bot.metrics``: count, time, log)."""
        self.on_handled: Callable[[list[int]], None] | None = None
        """Told the update ids of each unit of work once it committed and answered
        (benchmarks)."""
        self._conversations: dict[ConversationKey, _Conversation] = {}
        self._held: set[int] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_CONVERSATIONS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: list[tuple[list[dict[str, Any]], asyncio.Future[int]]] = []
        self._storing: asyncio.Task[None] | None = None
        self._sweep_mark = 0
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    # -- receiving -----------------------------------------------------------------------------

    async def receive(self, raw_updates: list[dict[str, Any]]) -> int:
        """Commit these updates (with any others arriving meanwhile: one transaction), then
        queue them for handling; returns how many were new. Raises when they could not be
        stored: nothing may tell Telegram they arrived."""
        if not raw_updates:
            return 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw_updates, future))
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_waiting())
        return await future

    async def _store_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                new = await self._store([raw for raws, _ in batch for raw in raws])
            except Exception as error:  # every caller sees the failure (no 200, no offset)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for raws, future in batch:
                if not future.done():
                    future.set_result(sum(update_id_of(raw) in new for raw in raws))

    async def _store(self, raw_updates: list[dict[str, Any]]) -> set[int]:
        """Store what is carebot's to keep in one transaction, an update that cannot be read
        parked at once; the update ids that were new."""
        now = self._clock.now()
        parsed, unreadable = self._read(raw_updates, now)
        if any(self._foreign_group(update) for _, _, update, _ in parsed):
            await self._recheck_staff_group()  # another process's /setup may have moved it
        rows: list[dict[str, Any]] = []
        updates: dict[int, Update] = {}
        for update_id, raw, update, record in parsed:
            if not self._keep(update):
                continue
            try:
                row = {**record, "update_id": update_id, "received_at": now}
                row["payload"] = _payload(raw)
            except Exception as error:  # nothing a rule could handle: parked, not handled
                unreadable.append(_unreadable_row(raw, update_id, error, now))
                continue
            rows.append(row)
            updates[update_id] = update
        if not rows and not unreadable:
            return set()
        async with self._sessions.begin() as session:
            stored = await inbox_queries.store(session, rows)
            parked = await inbox_queries.store_unreadable(session, unreadable)
        for update_id, row_id in sorted(stored.items(), key=lambda pair: pair[1]):
            self._queue(_Item(row_id, updates[update_id]))
        for row in unreadable:
            if row["update_id"] in parked:
                logger.warning(
                    "update %s cannot be read (%s): parked unhandled, see `carebot inbox failed`",
                    row["update_id"],
                    row["error"],
                )
        skipped = len(rows) + len(unreadable) - len(stored) - len(parked)
        if skipped:
            logger.info("%d update(s) already stored: redelivery skipped", skipped)
        return set(stored) | set(parked)

    def _read(
        self, raw_updates: list[dict[str, Any]], now: datetime
    ) -> tuple[list[tuple[int, dict[str, Any], Update, dict[str, Any]]], list[dict[str, Any]]]:
        """Each raw update read by PTB, in order, once: ``(update_id, raw, update, record)``;
        and the rows of those that cannot be read (parked)."""
        parsed: list[tuple[int, dict[str, Any], Update, dict[str, Any]]] = []
        unreadable: list[dict[str, Any]] = []
        seen: set[int] = set()
        bot = self._application.bot
        for raw in raw_updates:
            update_id = update_id_of(raw)
            if update_id is None:  # not an update: nothing to store it by
                logger.warning("an item without a usable update_id skipped")
                continue
            if update_id in seen:
                continue
            seen.add(update_id)
            try:
                update, record = read_update(raw, bot)
            except Exception as error:  # nothing a rule could handle: parked, not handled
                unreadable.append(_unreadable_row(raw, update_id, error, now))
                continue
            parsed.append((update_id, raw, update, record))
        return parsed, unreadable

    def _ours(self, update: Update) -> bool:
        """Private chats, the staff group, and ``/setup`` in any group."""
        chat = update.effective_chat
        if chat is None or chat.type == ChatType.PRIVATE:
            return True
        if self._staff_group.name_of(chat.id) is not None:
            return True
        return _is_setup(update)

    def _foreign_group(self, update: Update) -> bool:
        """A group's update that is not ours while ``/setup`` may still change the group."""
        chat = update.effective_chat
        return (
            chat is not None
            and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)
            and not self._ours(update)
        )

    async def _recheck_staff_group(self) -> None:
        """Read the stored staff group again (at most every ``STAFF_GROUP_RECHECK_SECONDS``):
        a staff message right after another process's ``/setup`` is kept, not dropped."""
        moment = asyncio.get_running_loop().time()
        if moment < self._group_read_at + STAFF_GROUP_RECHECK_SECONDS:
            return
        self._group_read_at = moment
        async with self._sessions() as session:
            self._staff_group.load(await stored_staff_groups(session))

    def _keep(self, update: Update) -> bool:
        """Whether to store the update; other groups are not carebot's to keep (the first
        update from each is logged: its id and title, never what anybody wrote nor who)."""
        if self._ours(update):
            return True
        chat = update.effective_chat
        if chat is None or chat.type not in (ChatType.GROUP, ChatType.SUPERGROUP):
            return False
        if chat.id not in self._unknown_groups:
            if len(self._unknown_groups) >= MAX_UNKNOWN_GROUPS:
                self._unknown_groups.clear()
            self._unknown_groups.add(chat.id)
            logger.info(
                "updates from group %s (%r), which is not the staff group, are ignored",
                chat.id,
                chat.title,
            )
        return False

    async def _poll(self, wait_seconds: int) -> None:
        """Long polling until the inbox stops: fetch, commit, and only then confirm with the
        next offset. A failure (Telegram unreachable, the database away) is one WARNING line
        saying when the next try is, with a growing pause (``fetch_retry_delay``). The last
        batch is confirmed (a short ``getUpdates``) before returning."""
        stop = self._stopping
        bot = self._application.bot
        assert isinstance(bot, InboxBot), "build the Application with an InboxBot"
        offset: int | None = None
        failures = 0
        while not stop.is_set():
            fetching = asyncio.ensure_future(
                bot.fetch_updates(offset, wait_seconds, Update.ALL_TYPES)
            )
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not fetching.done():  # stopped while waiting: nothing fetched is lost
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError, TelegramError):
                    await fetching
                break
            try:
                offset = await self._take(fetching.result(), offset)
            except (InvalidToken, Conflict):
                raise
            except RetryAfter as error:
                await _pause(stop, retry_after_seconds(error))
                continue
            except Exception as error:  # the network or the database: the same batch again
                failures += 1
                delay = fetch_retry_delay(failures)
                logger.warning("%s; retrying in %s", fetch_failure(error), _seconds(delay))
                await _pause(stop, delay)
                continue
            if failures:
                logger.info("getUpdates works again after %d failed attempt(s)", failures)
                failures = 0
        if offset is not None:  # confirm what was stored, as PTB's Updater does on stop
            with contextlib.suppress(TelegramError, TimeoutError):
                async with asyncio.timeout(CONFIRM_TIMEOUT_SECONDS):
                    await bot.fetch_updates(offset, 0, Update.ALL_TYPES)

    async def _take(self, raw_updates: list[dict[str, Any]], offset: int | None) -> int | None:
        """Store a fetched batch; the offset that confirms it (``offset`` when it was empty)."""
        if raw_updates:
            await self.receive(raw_updates)
            ids = [i for raw in raw_updates if (i := update_id_of(raw)) is not None]
            if ids:
                return max(ids) + 1
        return offset

    # -- handling ------------------------------------------------------------------------------

    async def start(self, *, polling: bool, wait_seconds: int = POLL_TIMEOUT_SECONDS) -> int:
        """Queue every pending update (a previous process's, in arrival order: handled before
        anything that arrives later in the same conversation), then sweep now and then and, with
        ``polling``, fetch updates (long polls of ``wait_seconds``). Returns how many were
        pending."""
        self._stopping.clear()
        recovered = await self.sweep(everything=True)
        self._background = [asyncio.create_task(self._run_sweeps(), name="inbox-sweeps")]
        if polling:
            self._background.append(
                asyncio.create_task(self._poll(wait_seconds), name="inbox-polling")
            )
        return recovered

    async def sweep(self, *, everything: bool = False) -> int:
        """Queue the pending updates this process does not hold: all of them (on start), or
        those already stored at the previous sweep (a whole interval pending)."""
        async with self._sessions() as session:
            waiting = await inbox_queries.pending(
                session, up_to_id=None if everything else self._sweep_mark
            )
            self._sweep_mark = await inbox_queries.last_id(session)
        queued = 0
        unreadable: list[tuple[Pending, BaseException]] = []
        for row in waiting:
            if row.id in self._held:
                continue
            try:
                update = self._read_stored(row)
            except Exception as error:  # stored before a check, or retried: parked again
                unreadable.append((row, error))
                continue
            self._queue(_Item(row.id, update))
            queued += 1
        if queued:
            logger.info("inbox: %d pending update(s) picked up", queued)
        if unreadable:
            async with self._sessions.begin() as session:
                for row, failure in unreadable:
                    if await inbox_queries.park(session, row.id, _name(failure)):
                        logger.warning(
                            "update %s cannot be read (%s): parked unhandled, "
                            "see `carebot inbox failed`",
                            row.update_id,
                            _name(failure),
                        )
        return queued

    def _read_stored(self, row: Pending) -> Update:
        """A stored update, read again (``read_update``)."""
        raw = json.loads(row.payload)
        if update_id_of(raw) != row.update_id:
            raise UnreadableUpdate("the stored update lost its update_id")
        return read_update(raw, self._application.bot)[0]

    @property
    def polling(self) -> asyncio.Task[None] | None:
        """The fetch loop's task while long polling (it ends with an error the bot cannot get
        past: another process polling the same bot, a revoked token)."""
        return next(
            (task for task in self._background if task.get_name() == "inbox-polling"), None
        )

    async def _run_sweeps(self) -> None:
        while not await _pause(self._stopping, self._rules.sweep_seconds):
            try:
                await self.sweep()
            except Exception as error:  # the database is away: next time
                logger.warning("inbox sweep failed (%s)", _name(error))

    async def stop(self) -> None:
        """Stop fetching (confirming what was stored), let the units of work under way finish;
        what is still queued stays pending for the next start."""
        self._stopping.set()
        background, self._background = self._background, []
        for outcome in await asyncio.gather(*background, return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.warning("inbox: %s while stopping", _name(outcome))
        for conversation in self._conversations.values():
            self._held.difference_update(item.id for item in conversation.items)
            conversation.items.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _queue(self, item: _Item) -> None:
        if item.id in self._held:
            return
        self._held.add(item.id)
        key = conversation_key(item.update)
        conversation = self._conversations.setdefault(key, _Conversation())
        bisect.insort(conversation.items, item)
        if not conversation.running:
            conversation.running = True
            task = asyncio.create_task(self._drain(key, conversation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: ConversationKey, conversation: _Conversation) -> None:
        try:
            async with self._slots:
                while conversation.items:
                    batch = conversation.items[: self._rules.batch_size]
                    del conversation.items[: len(batch)]
                    try:
                        await self._handle(key, batch)
                    finally:
                        self._held.difference_update(item.id for item in batch)
        finally:
            conversation.running = False
            if self._conversations.get(key) is conversation and not conversation.items:
                del self._conversations[key]

    async def _handle(self, key: ConversationKey, batch: list[_Item]) -> None:
        """All of the batch in one unit of work; after a failure, one update at a time, each
        tried again with backoff until it is handled or parked."""
        error, tried = await self._attempt(key, batch, limit=self._rules.batch_size)
        if error is None:
            return
        if len(tried) > 1:
            for item in tried:
                error, alone = await self._attempt(key, [item], limit=1)
                if error is not None and alone:
                    await self._retry(key, alone[0], error)
        elif tried:
            await self._retry(key, tried[0], error)

    async def _retry(self, key: ConversationKey, item: _Item, error: BaseException) -> None:
        """Count the failure, wait, try again; until handled or parked. The database being
        away (locked by another process, unreachable, a deadlock) is no fault of the update's:
        it waits, with the same backoff, without using up its attempts."""
        waits = 0
        while True:
            attempts: int | None = None
            if not database_away(error):
                try:
                    attempts = await self._record_failure(item, error)
                except Exception as failure:  # the database went away meanwhile: wait
                    error = failure
                else:
                    if attempts is None:  # parked (or no longer pending): the conversation
                        return  # goes on
            if attempts is None:
                waits += 1
                logger.warning(
                    "inbox: update %s (inbox #%s) waits for the database (%s)",
                    item.update.update_id,
                    item.id,
                    _name(error),
                )
            step = attempts if attempts is not None else waits
            delay = min(self._rules.retry_seconds * 2 ** (step - 1), MAX_RETRY_SECONDS)
            if await _pause(self._stopping, delay):
                return  # stays pending: the next process tries it
            again, tried = await self._attempt(key, [item], limit=1)
            if again is None or not tried:
                return
            item, error = tried[0], again

    async def _attempt(
        self, key: ConversationKey, items: list[_Item], *, limit: int
    ) -> tuple[BaseException | None, list[_Item]]:
        """One unit of work over ``items`` (several processes: over the conversation's oldest
        pending updates, at most ``limit``); the rule's error (None when it committed) and the
        updates it was over."""
        unit: UnitOfWork | None = None
        owners: list[int] = []
        try:
            async with self._sessions.unit() as unit:
                if not self._exclusive:
                    items = await self._claim(unit.session, key, items, limit)
                for item in items:
                    await self._process(item.update)
                    if unit.failed is not None:
                        raise _RolledBack(unit.failed)
                    # What the update's rules left to do after the commit is theirs.
                    owners += [item.update.update_id] * (len(unit.after_commit) - len(owners))
                await inbox_queries.mark_handled(
                    unit.session, [item.id for item in items], self._clock.now()
                )
        except _RolledBack as rolled_back:
            return rolled_back.error, items
        except Exception as error:  # the database itself (commit, lock): the same as a rule
            return error, items
        assert unit is not None
        # Replies and the dispatcher's wake-up, now that the effects are stored. A reply that
        # fails is logged like any error of its update (the customer's message is kept).
        for update_id, action in zip(owners, unit.after_commit, strict=True):
            try:
                await action()
            except Exception as error:
                log_update_error(update_id, error)
        if self.on_handled is not None:
            self.on_handled([item.update.update_id for item in items])
        return None, items

    async def _claim(
        self, session: AsyncSession, key: ConversationKey, items: list[_Item], limit: int
    ) -> list[_Item]:
        """Several processes: hold the conversation (until the commit), then take its pending
        updates in arrival order, whichever process stored them. Those another process handled
        meanwhile are gone; those it stored first come first. (Telegram sends a chat's next
        update only once the previous one is acknowledged, that is stored.)"""
        await inbox_queries.lock_conversation(session, key)
        mine = {item.id: item for item in items}
        claimed: list[_Item] = []
        for row in await inbox_queries.pending_in(session, key, limit):
            item = mine.get(row.id)
            if item is None:
                try:
                    item = _Item(row.id, self._read_stored(row))
                except Exception:  # unreadable: the next sweep parks it
                    continue
            claimed.append(item)
        return claimed

    async def _process(self, update: Update) -> None:
        handling = self._application.process_update(update)
        if self.observer is not None:
            await self.observer(update, handling)
        else:
            await handling

    async def _record_failure(self, item: _Item, error: BaseException) -> int | None:
        """Count the failed attempt; its number, or None once the update is parked."""
        text = _name(error)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            outcome = await inbox_queries.record_failure(
                session, item.id, text, max_attempts=self._rules.max_attempts
            )
            if outcome is None:
                return None
            attempts, parked = outcome
            if parked and self.notify_parked is not None:
                await self.notify_parked(session, item.id, _kind(item.update), attempts, text, now)
        if parked:
            logger.error(
                "inbox: update %s (inbox #%s) parked after %d attempts: %s",
                item.update.update_id,
                item.id,
                attempts,
                text,
            )
            return None
        logger.warning(
            "inbox: update %s (inbox #%s) failed, attempt %d: %s",
            item.update.update_id,
            item.id,
            attempts,
            text,
        )
        return attempts


RETRY_SQLSTATES = ("40001", "40P01")
"""PostgreSQL's serialization failure and deadlock: try again, the update is not at fault."""
DATABASE_AWAY = (
    OperationalError,
    InterfaceError,
    SQLAlchemyTimeoutError,
    TimeoutError,
    ConnectionError,
)


def database_away(error: BaseException) -> bool:
    """Whether an update's unit of work failed because the database was away (locked by
    another process, unreachable, a lost connection, a deadlock, no connection in time)
    rather than because of the update: such a failure is waited out, not counted."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        OperationalError
        | InterfaceError
        | SQLAlchemyTimeoutError
        | TimeoutError
        | ConnectionError,
    )


class _RolledBack(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _name(error: BaseException) -> str:
    """An error for logs and the inbox: its type only (a database error's text can carry what
    a customer wrote)."""
    return type(error).__name__


def fetch_retry_delay(failures: int) -> float:
    """The pause after the ``failures``-th failed fetch in a row: 1 s, 2 s, 4 s ... 30 s."""
    return min(FETCH_RETRY_FIRST_SECONDS * 2 ** (failures - 1), FETCH_RETRY_MAX_SECONDS)


def fetch_failure(error: BaseException) -> str:
    """What failed, for the one log line: Telegram unreachable with PTB's reason (it names the
    connection error, never a message), or the batch not stored with the error's type only (a
    database error's text can quote what a customer wrote)."""
    if isinstance(error, NetworkError) and not isinstance(error, BadRequest):
        return f"Telegram unreachable: getUpdates failed ({type(error).__name__}: {error})"
    if isinstance(error, TelegramError):
        return f"getUpdates failed ({type(error).__name__}: {error})"
    return f"storing the fetched updates failed ({_name(error)})"


def _seconds(delay: float) -> str:
    return f"{delay:g} s"


def _kind(update: Update) -> str:
    return str(record_of(update)["kind"])


async def _pause(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
