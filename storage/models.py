"""SQLAlchemy models: the database is the truth (design, Principle 1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    and_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.columns import BigIntId, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Customer(Base):
    """A person the shop serves; erasing one detaches it from Telegram and clears personal data."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(256))
    username: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8), default="en")
    language_chosen: Mapped[bool] = mapped_column(Boolean, default=False)
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2))
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    birth_month: Mapped[int | None] = mapped_column(SmallInteger)
    birth_day: Mapped[int | None] = mapped_column(SmallInteger)
    birthday_lunar: Mapped[bool] = mapped_column(Boolean, default=False)
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_answered: Mapped[bool] = mapped_column(Boolean, default=False)
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    tier: Mapped[str] = mapped_column(String(32), default="normal")
    tier_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    stage: Mapped[str] = mapped_column(String(16), default="prospect")
    awaiting: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # One-time code an imported customer sends as ``/start CODE`` to link their Telegram account.
    link_code: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_customers_birthday", "birth_month", "birth_day"),
        Index("ix_customers_link_code", "link_code", unique=True),
        Index("ix_customers_phone", "phone"),
    )


class InboxUpdate(Base):
    """Every update a person sent, committed before Telegram is told it arrived (the next
    ``getUpdates`` offset, the webhook's ``200``), then handled from here exactly once.

    While ``pending`` the row keeps the raw update (``payload``); the transaction that handles
    it marks it ``handled`` and drops the payload, keeping only the record of what was sent
    (kind, text, file) that reports and ``/forget`` read. An update that fails
    ``inbox.max_attempts`` times is ``failed``: parked with its error until retried.
    """

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    update_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    """With ``chat_id``, the conversation: a private chat, or one topic of the staff group."""
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    sender_user_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
    media_file_id: Mapped[str | None] = mapped_column(String(256))
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    payload: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_inbox_chat", "chat_id", "telegram_message_id"),
        Index("ix_inbox_state", "state", "chat_id", "thread_id", "id"),
    )


class Outbox(Base):
    """A message the bot sends on its own, drained by ``scheduler.dispatcher`` (design,
    Principles 1 and 2). Rows are written in the transaction that decided to send, so a rollback
    drops them; the unique ``dedupe_key`` makes every planner safe to run twice.

    ``state`` moves pending -> claimed -> sent, or to failed (permanent: blocked, chat gone,
    no consent, malformed payload), dead (transient errors until the last attempt) or cancelled
    (by an operator). ``claimed_until`` is the lease of a claimed row: when it runs out (the
    dispatcher died) the row is claimed again. ``care_day``/``care_slot`` hold the customer-local
    day a proactive message counts against; their unique index enforces the daily cap even with
    several dispatchers.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    transactional: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    care_day: Mapped[str | None] = mapped_column(String(10))
    care_slot: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # "Claim the next due batch": one range scan per priority level over open rows only
        # (sent/failed/dead rows leave the index, so it stays as small as the backlog).
        Index(
            "ix_outbox_due",
            "priority",
            "due_at",
            "id",
            sqlite_where=text("state IN ('pending', 'claimed')"),
            postgresql_where=text("state IN ('pending', 'claimed')"),
        ),
        # The daily cap on proactive messages, per customer and customer-local day.
        Index("ix_outbox_care_day", "customer_id", "care_day", "care_slot", unique=True),
    )


class KbQuestion(Base):
    """A question the knowledge base was asked and what came of it: answered, suggested (the
    best few offered as buttons), picked (one of them chosen) or unanswered; then the customer's
    feedback. ``carebot report kb`` reads these."""

    __tablename__ = "kb_questions"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    language: Mapped[str] = mapped_column(String(8))
    question: Mapped[str] = mapped_column(String(500))
    """Normalised (what the report groups by, and matching used)."""
    typed: Mapped[str | None] = mapped_column(String(500))
    """The question as the customer typed it: what staff see when they take it over (None
    for questions asked before carebot kept it; ``/forget`` empties it)."""
    entry_id: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))
    feedback: Mapped[str | None] = mapped_column(String(16))
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_kb_questions_outcome", "outcome", "asked_at"),
        Index("ix_kb_questions_entry", "entry_id", "feedback"),
    )


class KbHandoff(Base):
    """A customer asked for a person after the knowledge base (👎, "talk to a person" or an
    entry's complaint button). The tickets feature turns these into tickets."""

    __tablename__ = "kb_handoffs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    question: Mapped[str] = mapped_column(String(500))
    entry_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- Orders, RFM scores, tiers and lifecycle stages ---

# Refunded and cancelled orders count for nothing. The same literal text is used in the partial
# index below and in the queries, so both databases can answer RFM from the index alone.
COUNTED_ORDERS = "status NOT IN ('refunded', 'cancelled')"
UNCOUNTED_STATUSES = ("refunded", "cancelled")


class Order(Base):
    """An order from the shop, upserted by ``external_id`` (re-importing changes nothing).

    Amounts are integer hundredths: ``amount_cents`` in the order's ``currency``, ``value_cents``
    converted to the shop's currency (what RFM's monetary sums). ``placed_day`` is the order's
    calendar day in the shop's time zone, as days since 1970-01-01: RFM arithmetic is integer
    and identical on SQLite and PostgreSQL.
    """

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    value_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    placed_day: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    coupon: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_orders_customer", "customer_id", "placed_at"),
        # Covering index for RFM: one ordered scan per customer, counted orders only. (status
        # too: SQLite still checks the index's own condition, and would read every row for it.)
        Index(
            "ix_orders_rfm",
            "customer_id",
            "placed_day",
            "value_cents",
            "status",
            sqlite_where=text(COUNTED_ORDERS),
            postgresql_where=text(COUNTED_ORDERS),
        ),
        # The orders of a given day: when a day leaves a window, only its orders change window
        # counts (``storage.tiers.statistics.age_windows``).
        Index(
            "ix_orders_day",
            "placed_day",
            "customer_id",
            "value_cents",
            "status",
            sqlite_where=text(COUNTED_ORDERS),
            postgresql_where=text(COUNTED_ORDERS),
        ),
    )


def delivered(order: Any = None) -> Any:
    """The condition "this order was delivered": a ``delivered_at`` and a status that counts,
    whatever that status is (``delivered``, ``completed``, or one a shop added). Follow-up
    visits and delivery surveys both use it, so an order is delivered for both or neither.
    ``order`` is ``Order`` or an alias of it."""
    target = Order if order is None else order
    return and_(target.delivered_at.is_not(None), target.status.not_in(UNCOUNTED_STATUSES))


class RfmScore(Base):
    """RFM of one customer with at least one counted order (no row: a prospect).

    The first four values depend only on the customer's counted orders and are refreshed when
    those change (``rfm_pending``); the rest depend on the day and on everybody else and are
    rewritten by every run (only the rows whose values changed). ``tier`` is what the rules
    give, before staff pinning; ``customers.tier`` and ``customers.stage`` are the truth the rest
    of carebot reads. ``churn_flags`` is a bit set, see ``storage.tiers.spec.ChurnFlag``.
    """

    __tablename__ = "rfm_scores"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    first_day: Mapped[int] = mapped_column(Integer)
    last_day: Mapped[int] = mapped_column(Integer)
    orders_total: Mapped[int] = mapped_column(Integer)
    median_gap: Mapped[float | None] = mapped_column(Float)
    frequency: Mapped[int] = mapped_column(Integer, default=0)
    monetary_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    orders_recent: Mapped[int] = mapped_column(Integer, default=0)
    orders_previous: Mapped[int] = mapped_column(Integer, default=0)
    spend_recent_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    spend_previous_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    r_score: Mapped[int | None] = mapped_column(SmallInteger)
    f_score: Mapped[int | None] = mapped_column(SmallInteger)
    m_score: Mapped[int | None] = mapped_column(SmallInteger)
    tier: Mapped[str | None] = mapped_column(String(32))
    tier_rule: Mapped[int] = mapped_column(SmallInteger, default=0)
    stage: Mapped[str | None] = mapped_column(String(16))
    at_risk_after: Mapped[float | None] = mapped_column(Float)
    churn_flags: Mapped[int] = mapped_column(SmallInteger, default=0)
    # The run that last changed tier, stage or flags (it copies them to ``customers``).
    changed_run: Mapped[int | None] = mapped_column(BigInteger)
    # The tier staff pinned (copied from ``customers`` when the row is refreshed; pinning
    # queues the customer): the at-risk gap follows it.
    pinned_tier: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        # Quintile boundaries are read by position on these (the NTILE groups' edges).
        Index("ix_rfm_scores_last_day", "last_day"),
        Index("ix_rfm_scores_frequency", "frequency"),
        Index("ix_rfm_scores_monetary", "monetary_cents"),
        Index("ix_rfm_scores_changed_run", "changed_run"),
    )


class RfmPending(Base):
    """Customers whose orders changed since their RFM was computed: the incremental run's queue.

    Writers upsert (which locks the row on PostgreSQL), so a run that claims the queue while an
    import is committing waits for it instead of losing its mark.
    """

    __tablename__ = "rfm_pending"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TierRun(Base):
    """One recompute: full (new quintile boundaries, everybody) or incremental (the queue).

    ``thresholds`` holds the boundaries that run scored with: for each of ``last_day``,
    ``frequency`` and ``monetary_cents`` the smallest value earning scores 2, 3, 4 and 5 (null:
    unreachable). Incremental runs reuse those of the last full run. Every run leaves every
    customer's window counts as of ``day`` for windows of ``window_days`` and ``period_days``;
    the next run only brings forward those whose orders crossed a window edge since.
    """

    __tablename__ = "tier_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    full: Mapped[bool] = mapped_column(Boolean)
    day: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    tier_changes: Mapped[int] = mapped_column(Integer, default=0)
    customer_changes: Mapped[int] = mapped_column(Integer, default=0)
    window_days: Mapped[int] = mapped_column(Integer)
    period_days: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_tier_runs_full", "full", "id"),)


class TierHistory(Base):
    """Every change of a customer's tier: old, new, when, and why (the rule that matched, or
    who pinned it)."""

    __tablename__ = "tier_history"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("tier_runs.id", ondelete="SET NULL"), index=True
    )
    old_tier: Mapped[str | None] = mapped_column(String(32))
    new_tier: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(300))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_tier_history_customer", "customer_id", "changed_at"),)


# --- Tickets: complaints and hand-offs, their staff topics and history ---


class Ticket(Base):
    """A complaint or question handled by staff in its own forum topic of the staff group.

    ``open_customer_id`` is the customer's id while the ticket is not closed and NULL after:
    its unique index allows one open ticket per customer, whoever races to open it.
    ``status`` is open (no staff reply yet), waiting_staff, waiting_customer, resolved (staff
    closed it, the customer is asked to confirm) or closed. ``priority`` is 0 (low) to 3
    (urgent); ``tier`` is the customer's tier when the ticket opened (reports group by it).
    Topic fields mirror what the bot last did to the topic (``topic_thread_id`` None: none yet,
    or it was deleted and will be recreated).
    """

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    open_customer_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    source: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    order_ref: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(SmallInteger, default=1)
    tier: Mapped[str] = mapped_column(String(32))
    assignee_user_id: Mapped[int | None] = mapped_column(BigInteger)
    assignee_name: Mapped[str | None] = mapped_column(String(128))
    staff_group: Mapped[str] = mapped_column(String(32), default="main")
    """The staff group (by name) the ticket belongs to: routing chose it, ``/move`` changes it."""
    staff_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    """The chat ``topic_thread_id`` is a topic of (thread ids are per chat)."""
    topic_thread_id: Mapped[int | None] = mapped_column(BigInteger)
    topic_title: Mapped[str | None] = mapped_column(String(128))
    topic_closed: Mapped[bool] = mapped_column(Boolean, default=False)
    card_message_id: Mapped[int | None] = mapped_column(BigInteger)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_due: Mapped[datetime] = mapped_column(UTCDateTime)
    resolution_due: Mapped[datetime] = mapped_column(UTCDateTime)
    first_response_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopen_count: Mapped[int] = mapped_column(SmallInteger, default=0)
    flood_noticed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    after_hours_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the desk opens again, as the customer was last told while it was closed: the
    out-of-hours reply goes once per ticket and closed period."""
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    owner: Mapped[Customer | None] = relationship(viewonly=True, lazy="raise")
    """The customer, only where a query loads it with the ticket (``storage.tickets.rows``
    locks a ticket that way): holding it keeps it in the session, so ``session.get`` finds it
    without a query. Anywhere else reading it raises instead of querying behind one's back."""

    __table_args__ = (
        Index("ix_tickets_customer", "customer_id", "opened_at"),
        Index("ix_tickets_topic", "staff_chat_id", "topic_thread_id"),
        Index("ix_tickets_opened", "opened_at"),
        # The SLA planner's scans: open tickets by their next deadline.
        Index("ix_tickets_first_response_due", "status", "first_response_due"),
        Index("ix_tickets_resolution_due", "status", "resolution_due"),
    )


class TicketCounter(Base):
    """The last number given per prefix (C-000123): numbers are dense and never reused."""

    __tablename__ = "ticket_counters"

    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class TicketMessage(Base):
    """A ticket's history: what the customer wrote (in), staff replies (out), internal notes
    (note) and events (event: opened, claimed, closed, ...). An edit is a new row pointing at
    the original (``edit_of_id``), which keeps its text.

    ``chat_message_id`` is the message where it was written (the customer's private chat, or
    the topic); ``copy_message_id`` its copy on the other side once relayed. ``state`` says
    what became of a relay: queued, relayed, undelivered, throttled or banned.
    """

    __tablename__ = "ticket_messages"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))
    author_user_id: Mapped[int | None] = mapped_column(BigInteger)
    author_name: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    media_file_id: Mapped[str | None] = mapped_column(String(256))
    media_group_id: Mapped[str | None] = mapped_column(String(64))
    chat_message_id: Mapped[int | None] = mapped_column(BigInteger)
    copy_message_id: Mapped[int | None] = mapped_column(BigInteger)
    edit_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket_messages.id", ondelete="SET NULL")
    )
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_ticket_messages_ticket", "ticket_id", "id"),
        Index("ix_ticket_messages_source", "ticket_id", "direction", "chat_message_id"),
    )


class TicketDelivery(Base):
    """One thing to do in a ticket's topic (lane "topic") or its customer's chat (lane
    "customer"), in order. A lane's deliveries go into the outbox a window at a time (see
    ``handlers.tickets.lanes.pump``); when the window's last is sent, the next window is
    queued, and a failure takes the rest of its window back. This keeps each direction in
    order across retries,
    waits for the topic to exist, and lets a deleted or closed topic be recreated or reopened
    in front of what was waiting (``front``).
    """

    __tablename__ = "ticket_deliveries"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    lane: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(16))
    ticket_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket_messages.id", ondelete="SET NULL")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    front: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(12))
    tries: Mapped[int] = mapped_column(SmallInteger, default=0)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_ticket_deliveries_lane", "ticket_id", "lane", "state", "id"),)


class ComplaintDraft(Base):
    """A complaint being filed: the conversation's state lives here, so a restart resumes it at
    the same step and ``/cancel`` deletes it whole. ``items`` are the description messages."""

    __tablename__ = "complaint_drafts"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    step: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    order_ref: Mapped[str | None] = mapped_column(String(64))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    prompt_message_id: Mapped[int | None] = mapped_column(BigInteger)
    """The flow's latest message with step buttons (Done / Skip / Cancel) in the customer's
    chat: they are taken away once its step is over."""
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StaffMember(Base):
    """People seen in the staff group, with their last membership check (``/assign @name``
    finds them by username)."""

    __tablename__ = "staff_members"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(256))
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerBan(Base):
    """A customer staff banned: their messages are kept but not relayed, no new tickets."""

    __tablename__ = "customer_bans"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    banned_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    banned_by_name: Mapped[str | None] = mapped_column(String(128))
    banned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- Care plans: retention coupons ---


RETENTION_COUPONS = "kind = 'retention'"


class Coupon(Base):
    """A single-use coupon of one customer (``code`` is unique and random): a retention offer to
    a customer at risk (``kind`` "retention", ``discount_percent`` off), or points redeemed with
    ``/redeem`` (``kind`` "points", ``value_cents`` off). ``issued_day`` is the customer-local
    day of the offer: one retention offer per customer and day, whoever races to issue it.
    ``used_at``/``order_id`` are set when an imported order carries the code within its
    validity (conversion)."""

    __tablename__ = "coupons"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(32))
    discount_percent: Mapped[int] = mapped_column(SmallInteger)
    min_spend_cents: Mapped[int] = mapped_column(BigInteger)
    issued_day: Mapped[str] = mapped_column(String(10))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16), default="retention", server_default="retention")
    value_cents: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(
            "ix_coupons_customer_day",
            "customer_id",
            "issued_day",
            unique=True,
            sqlite_where=text(RETENTION_COUPONS),
            postgresql_where=text(RETENTION_COUPONS),
        ),
        Index("ix_coupons_customer_issued", "customer_id", "issued_at"),
    )


class PointsMovement(Base):
    """One movement of a customer's loyalty points (README: Loyalty points): ``kind`` earn (a
    delivered order), reverse (that order refunded or cancelled), welcome, redeem (into a
    coupon), adjust (by staff, with a ``reason``) or expire. ``points`` is signed. ``key`` is
    unique and says what the movement is for (``earn:order:12``, ``expire:5:2027-12-31``), so
    a re-import or a second run of a job never adds one twice. Rows that add points carry
    ``expires_at``, when what is left of them stops counting; an expire row carries the
    ``expires_at`` of the points it closes. ``/forget`` deletes a customer's rows."""

    __tablename__ = "points_ledger"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id", ondelete="SET NULL"))
    tier: Mapped[str | None] = mapped_column(String(32))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_points_ledger_customer", "customer_id", "created_at", "id"),
        Index("ix_points_ledger_order", "order_id", "kind"),
        # The expiry and reminder jobs read the points that expire around now.
        Index("ix_points_ledger_expires", "expires_at", "customer_id"),
    )


# Retention offers read the customers the tiers job flags at risk (a small slice of the table).
AT_RISK = "stage = 'at_risk'"
Index(
    "ix_customers_at_risk",
    Customer.id,
    sqlite_where=text(AT_RISK),
    postgresql_where=text(AT_RISK),
)
# Follow-up visits look orders up by delivery time (a range per cadence step, no full scan),
# and check each one is its customer's latest delivery, from these indexes alone.
Index("ix_orders_delivered", Order.delivered_at, Order.customer_id, Order.status)
Index("ix_orders_customer_delivered", Order.customer_id, Order.delivered_at)
# Coupon conversion walks only the orders that carry a coupon code.
WITH_COUPON = "coupon IS NOT NULL"
Index(
    "ix_orders_coupon",
    Order.coupon,
    sqlite_where=text(WITH_COUPON),
    postgresql_where=text(WITH_COUPON),
)
# Follow-ups after a resolved ticket look tickets up by resolution time.
Index("ix_tickets_resolved", Ticket.resolved_at)


# --- surveys ---


class SurveyDefinition(Base):
    """A survey file as it was when a response started (``definition`` is its JSON): a
    response follows the questions it was asked with even after the operator edits the file.
    One row per survey and content ``digest``."""

    __tablename__ = "survey_definitions"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_survey_definitions_digest", "survey_id", "digest", unique=True),)


class SurveyResponse(Base):
    """One survey sent to one customer about one ``subject`` (``ticket:12``, ``order:34``,
    ``period:2026-11-23``): asked once, never again (the unique key). ``tier`` and ``category``
    are snapshots for the reports. ``status``: invited (no answer yet), partial, complete,
    expired (closed without an answer); a partial response stays partial when it closes.
    ``current_question`` is the question waiting for an answer (None when done)."""

    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("survey_definitions.id"))
    survey_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(100))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    tier: Mapped[str] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(12))
    current_question: Mapped[str | None] = mapped_column(String(32))
    low_score: Mapped[bool] = mapped_column(Boolean, default=False)
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_answer_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recovery_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL")
    )
    recovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_survey_responses_subject", "survey_id", "customer_id", "subject", unique=True),
        # Fatigue: a customer's latest invitations; the reports: a period's invitations.
        Index("ix_survey_responses_customer", "customer_id", "invited_at"),
        Index("ix_survey_responses_invited", "invited_at"),
        # Reminders, expiry and recovery look at the responses still open.
        Index("ix_survey_responses_open", "closed_at", "expires_at"),
        # "Not asked yet about this ticket / order" (and the foreign keys' ON DELETE).
        Index("ix_survey_responses_ticket", "ticket_id"),
        Index("ix_survey_responses_order", "order_id"),
    )


class SurveyAnswer(Base):
    """One answer, saved the moment it is given. ``score`` for scale (1-5) and NPS (0-10)
    questions, ``choice`` for single choice, ``text`` for free text (personal data: erased
    with the customer); none of them when skipped. ``dimension`` is the question's
    (delivery_speed, service_attitude, ...), copied for the reports."""

    __tablename__ = "survey_answers"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("survey_responses.id", ondelete="CASCADE"))
    question_id: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(8))
    dimension: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[int | None] = mapped_column(SmallInteger)
    choice: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_survey_answers_question", "response_id", "question_id", unique=True),
    )


# CSAT invitations look tickets up by closing time.
Index("ix_tickets_closed", Ticket.closed_at)


# --- follow-up visits ---


class FollowupVisit(Base):
    """The delivery a customer's follow-up visits count from: their latest delivered order.

    One row per customer, rewritten whenever their orders change (``storage.care.
    schedule_followups``). ``day_start`` is when the delivery's local day began (UTC), so the
    planner finds the visits due today with one index range per cadence step instead of
    visiting every order delivered around that day. The steps are not stored: the customer's
    current tier gives them when the planner reads, so a tier change or a new cadence in
    ``care.toml`` needs no rewrite.
    """

    __tablename__ = "followup_visits"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    day_start: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_followup_visits_day", "day_start", "customer_id"),)


# --- operations ---


class StaffGroupSetting(Base):
    """The staff groups ``/setup`` chose (README: Connect your staff group; Several staff
    groups): one row per name (``main`` for a bare ``/setup``), absent until its first
    ``/setup``; a chat is one group only. ``CAREBOT_STAFF_CHAT_ID``, when set, wins over
    ``main``'s row. ``title`` is the group's name when it was set (for the log);
    ``set_by_user_id`` who sent ``/setup``."""

    __tablename__ = "staff_groups"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    title: Mapped[str | None] = mapped_column(String(256))
    set_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StaffDuty(Base):
    """Who is on duty in a staff group (``/duty on|off`` there), for auto-assignment;
    ``assigned_turn``: the group's count of auto-assignments when it last gave them a ticket
    (0: never; round robin takes the lowest, so the one waiting longest)."""

    __tablename__ = "staff_duty"

    group_name: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(128))
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_turn: Mapped[int] = mapped_column(BigInteger, default=0)


class KbReload(Base):
    """``carebot kb reload`` asked the running bots to load the knowledge-base files again: one
    row, ``id`` 1, whose ``version`` goes up by one each time; every bot process reads it every
    few seconds (``scheduler.kb_reload``). In the database, not a file: the config directory
    may be read-only (the Docker image's example config belongs to root)."""

    __tablename__ = "kb_reload"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DashboardLogin(Base):
    """A one-time login link to the staff dashboard (``/dashboard`` in the staff group): only
    the token's SHA-256 is kept, it works once (``used_at``) and until ``expires_at``."""

    __tablename__ = "dashboard_logins"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DashboardSession(Base):
    """A signed-in dashboard session (README: The staff dashboard): the signed cookie names it,
    and it counts only while this row is unrevoked and unexpired, so signing out (or leaving the
    staff group) ends it on every replica. Only the session id's SHA-256 is kept."""

    __tablename__ = "dashboard_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- what was bought, and recommendations ---


class Product(Base):
    """A product of the shop's catalogue, upserted by ``sku`` (``carebot import products``).
    Names in both languages: recommendations show the customer's. Inactive products are never
    recommended."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(256))
    name_en: Mapped[str] = mapped_column(String(256))
    category: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(1000))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def name(self, language: str) -> str:
        """The product's name in ``language`` (``zh`` or else English)."""
        return self.name_zh if language == "zh" else self.name_en


class OrderLine(Base):
    """One product of an order (``carebot import order-lines``): one line per order and product
    (the shop adds up quantities), upserted by that pair. ``unit_price_cents`` is in
    ``currency``, as the file wrote it. Orders without lines are fine."""

    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_order_lines_order_product", "order_id", "product_id", unique=True),
        Index("ix_order_lines_product", "product_id"),
    )


class ProductPair(Base):
    """Bought together (the nightly recommendations job, ``storage.recommend``): of the
    ``buyers`` of ``product_id``, ``support`` also bought ``other_id`` in the same order or
    within the window of ``recommend.toml``; ``confidence`` is support / buyers. Only pairs over
    both thresholds, each product's best ``neighbours``; anonymous counts."""

    __tablename__ = "product_pairs"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    other_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    support: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)


class Recommendation(Base):
    """A customer's recommended products, best first (``rank`` from 1): active products they
    have not bought, scored by what they bought (``reason`` "together"), then the best sellers
    ("popular") when co-purchases give fewer than top K. Rewritten by each run; erased by
    ``/forget``."""

    __tablename__ = "recommendations"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(16))


class RecommendRun(Base):
    """One run of the recommendations job: the shop ``day`` it ran for (one scheduled run a
    day) and what it found."""

    __tablename__ = "recommend_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    pairs: Mapped[int] = mapped_column(Integer, default=0)
    customers: Mapped[int] = mapped_column(Integer, default=0)


# --- campaigns ---


class CampaignRun(Base):
    """A campaign of ``campaigns/<name>.toml`` once it was first sent (``carebot campaign
    send``); ``cancelled_at``: ``carebot campaign cancel`` stopped it (nothing more is sent,
    and it is never sent again)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(String(48), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignRecipient(Base):
    """A customer a campaign was queued for, once per campaign (the unique index): the tier
    they had then (the statistics are by tier), their outbox row, their coupon, and when they
    pressed the message's "stop" button. Erased by ``/forget``."""

    __tablename__ = "campaign_recipients"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(32))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id", ondelete="SET NULL"))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pressed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_campaign_recipients_customer", "campaign_id", "customer_id", unique=True),
        Index("ix_campaign_recipients_erasure", "customer_id"),
    )
