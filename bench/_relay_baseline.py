"""The baseline of ``bench/relay.py``: a bare topic-relay support bot on stock python-telegram-bot.

What a simple relay bot does per message, nothing more: a customer writes in private, the bot
looks up the customer's topic in the staff group (creating it on their first message), copies
the message into it, records the copy and commits; a staff member writes in a topic, the bot
looks the customer up by the thread id, copies the message to them, records it and commits. One
session per update, the Bot API call made inside it. No ordering, no outbox, no retries: PTB's
stock ``Updater`` (long polling) and, unless asked otherwise, PTB's default transport (httpx)
and its default sequential update processing (``concurrent_updates`` off).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from telegram import Message, Update
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

from storage.engine import create_engine


class Base(DeclarativeBase):
    pass


class CustomerTopic(Base):
    """Which topic of the staff group belongs to which customer (and back)."""

    __tablename__ = "baseline_topics"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    thread_id: Mapped[int] = mapped_column(BigInteger, unique=True)


class RelayedMessage(Base):
    """One relayed message: where it came from and where its copy went."""

    __tablename__ = "baseline_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    direction: Mapped[str] = mapped_column(String(8))
    from_chat_id: Mapped[int] = mapped_column(BigInteger)
    from_message_id: Mapped[int] = mapped_column(BigInteger)
    to_chat_id: Mapped[int] = mapped_column(BigInteger)
    to_message_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@asynccontextmanager
async def baseline_bot(
    token: str,
    root_url: str,
    database_url: str,
    staff_chat_id: int,
    *,
    transport: str = "httpx",
    concurrency: int = 1,
) -> AsyncIterator[None]:
    """The bare relay bot, polling ``root_url``, its two tables created in ``database_url``;
    running while the block runs. ``concurrency`` > 1 turns on PTB's ``concurrent_updates``."""
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def from_customer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        async with sessions() as session:
            topic = await _topic_of(session, user_id=user.id)
            if topic is None:
                created = await context.bot.create_forum_topic(
                    staff_chat_id, name=f"{user.full_name} ({user.id})"
                )
                topic = CustomerTopic(user_id=user.id, thread_id=created.message_thread_id)
                session.add(topic)
            copy = await message.copy(staff_chat_id, message_thread_id=topic.thread_id)
            session.add(_relayed(user.id, "in", message, staff_chat_id, copy.message_id))
            await session.commit()

    async def from_staff(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.message_thread_id is None:
            return
        async with sessions() as session:
            topic = await _topic_of(session, thread_id=message.message_thread_id)
            if topic is None:
                return
            copy = await message.copy(topic.user_id)
            session.add(_relayed(topic.user_id, "out", message, topic.user_id, copy.message_id))
            await session.commit()

    builder = ApplicationBuilder().token(token).base_url(f"{root_url}/bot")
    builder = builder.base_file_url(f"{root_url}/file/bot")
    if transport == "aiohttp":  # carebot's transport, for comparison
        from bot.http import AiohttpRequest

        builder = builder.request(AiohttpRequest()).get_updates_request(
            AiohttpRequest(connection_pool_size=1)
        )
    if concurrency > 1:
        builder = builder.concurrent_updates(concurrency)
    application = builder.build()
    application.add_handler(
        MessageHandler(filters.ChatType.PRIVATE & ~filters.COMMAND, from_customer)
    )
    application.add_handler(
        MessageHandler(filters.Chat(staff_chat_id) & filters.IS_TOPIC_MESSAGE, from_staff)
    )
    try:
        async with application:
            await application.start()
            assert application.updater is not None
            await application.updater.start_polling()
            try:
                yield
            finally:
                await application.updater.stop()
                await application.stop()
    finally:
        await engine.dispose()


async def _topic_of(
    session: AsyncSession, *, user_id: int | None = None, thread_id: int | None = None
) -> CustomerTopic | None:
    if user_id is not None:
        return await session.get(CustomerTopic, user_id)
    query = select(CustomerTopic).where(CustomerTopic.thread_id == thread_id)
    return (await session.execute(query)).scalar_one_or_none()


def _relayed(
    user_id: int, direction: str, message: Message, to_chat_id: int, to_message_id: int
) -> RelayedMessage:
    return RelayedMessage(
        user_id=user_id,
        direction=direction,
        from_chat_id=message.chat_id,
        from_message_id=message.message_id,
        to_chat_id=to_chat_id,
        to_message_id=to_message_id,
        created_at=datetime.now(UTC),
    )
