"""Signing in to the dashboard: a one-time link, then a session the database can end.

A staff member sends ``/dashboard`` to the bot; the bot (having checked they are a member of
the staff group) mints a token, stores its SHA-256 and answers privately, without a link
preview, with ``<dashboard url>/dashboard/login/<token>``. Opening the link only shows a
"Sign in" page (a link preview fetching it spends nothing); its button POSTs, which spends the
token (once, within ``LINK_TTL``) and opens a session: a random session id whose SHA-256 is a
``dashboard_sessions`` row, and a cookie holding that id, the user id, name and expiry, signed
with HMAC-SHA256 under a secret every replica derives from the bot token. A request counts
only while the signature holds, the row is neither revoked (signed out, left the staff group)
nor expired, and the person is still in the staff group (asked of Telegram, cached briefly).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dashboard import queries

LINK_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=12)
LOGIN_PATH = "/dashboard/login/"
COOKIE = "carebot_dashboard"


@dataclass(frozen=True)
class StaffSession:
    """A signed-in staff member, as the cookie says; ``session_id`` names the stored session."""

    user_id: int
    name: str
    expires: datetime
    session_id: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def mint_login_token(
    session: AsyncSession, *, user_id: int, name: str, now: datetime
) -> str:
    """A new single-use token for ``user_id`` (the caller decided they are staff); flushes."""
    token = secrets.token_urlsafe(24)
    await queries.add_login(
        session,
        token_hash=_token_hash(token),
        user_id=user_id,
        name=name[:128],
        now=now,
        expires_at=now + LINK_TTL,
    )
    await queries.prune_logins(session, now - SESSION_TTL)
    await queries.prune_sessions(session, now - SESSION_TTL)
    return token


async def mint_login_path(
    sessionmaker: async_sessionmaker[AsyncSession], *, user_id: int, name: str, now: datetime
) -> str:
    """``/dashboard/login/<token>`` in its own transaction (the demo logs its visitor in)."""
    async with sessionmaker.begin() as session:
        token = await mint_login_token(session, user_id=user_id, name=name, now=now)
    return LOGIN_PATH + token


@dataclass(frozen=True)
class LoginLinks:
    """Full sign-in links under the dashboard's public root (``CAREBOT_DASHBOARD_URL``)."""

    base_url: str

    async def mint(self, session: AsyncSession, *, user_id: int, name: str, now: datetime) -> str:
        token = await mint_login_token(session, user_id=user_id, name=name, now=now)
        return self.base_url.rstrip("/") + LOGIN_PATH + token


def _usable(token: str) -> bool:
    return bool(token) and len(token) <= 100


async def peek_login_token(session: AsyncSession, token: str, now: datetime) -> str | None:
    """The name a valid, unused token would sign in; the token is not spent."""
    if not _usable(token):
        return None
    return await queries.login_open(session, _token_hash(token), now)


async def use_login_token(session: AsyncSession, token: str, now: datetime) -> StaffSession | None:
    """The session a valid, unused token opens: the token is spent and the session stored
    (flushed); None when the token is unknown, used or expired."""
    if not _usable(token):
        return None
    found = await queries.use_login(session, _token_hash(token), now)
    if found is None:
        return None
    user_id, name = found
    session_id = secrets.token_urlsafe(32)
    expires = now + SESSION_TTL
    await queries.add_session(
        session, id_hash=_token_hash(session_id), user_id=user_id, now=now, expires_at=expires
    )
    return StaffSession(user_id=user_id, name=name, expires=expires, session_id=session_id)


async def is_live(session: AsyncSession, staff: StaffSession, now: datetime) -> bool:
    """Whether the cookie's session is still stored, unrevoked and unexpired."""
    return await queries.session_active(session, _token_hash(staff.session_id), staff.user_id, now)


async def sign_out(session: AsyncSession, staff: StaffSession, now: datetime) -> None:
    """End the cookie's session: its signature stays valid, the session no longer counts."""
    await queries.revoke_session(session, _token_hash(staff.session_id), now)


async def sign_out_everywhere(session: AsyncSession, user_id: int, now: datetime) -> int:
    """End every session of ``user_id`` (no longer in the staff group)."""
    return await queries.revoke_user_sessions(session, user_id, now)


class CookieSigner:
    """Session cookies and form tokens, signed with the dashboard secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dump(self, staff: StaffSession) -> str:
        body = json.dumps(
            {
                "s": staff.session_id,
                "u": staff.user_id,
                "n": staff.name,
                "e": int(staff.expires.timestamp()),
            },
            separators=(",", ":"),
            ensure_ascii=True,
        ).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._mac(payload.encode())}"

    def load(self, value: str | None, now: datetime) -> StaffSession | None:
        """The session in a cookie, if the signature holds and it has not expired (whether it
        is still live is the database's to say: ``is_live``)."""
        if not value or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload.encode()).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            staff = StaffSession(
                user_id=int(data["u"]),
                name=str(data["n"]),
                expires=datetime.fromtimestamp(int(data["e"]), tz=now.tzinfo),
                session_id=str(data["s"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return staff if staff.expires > now and _usable(staff.session_id) else None

    def form_token_matches(self, staff: StaffSession, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(
            given.encode(), self.form_token(staff).encode()
        )

    def form_token(self, staff: StaffSession) -> str:
        """A token forms must carry (a cross-site request cannot know it)."""
        return self._mac(f"form:{staff.session_id}".encode())
