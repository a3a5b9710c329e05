"""Signing in to the dashboard: a one-time link, then a signed session cookie.

A staff member sends ``/dashboard`` to the bot; the bot (having checked they are a member of
the staff group) mints a token, stores its SHA-256 and answers with
``<dashboard url>/dashboard/login/<token>``. The token works once and for ``LINK_TTL``; opening
it sets a cookie holding the user id, name and expiry, signed with HMAC-SHA256 under a secret
every replica derives from the bot token, so any process can check it without the database.
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
LOGIN_LINKS_KEY = "operations.login_links"


@dataclass(frozen=True)
class StaffSession:
    user_id: int
    name: str
    expires: datetime


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


async def use_login_token(session: AsyncSession, token: str, now: datetime) -> StaffSession | None:
    """The session a valid, unused token opens (and the token is spent); None otherwise."""
    if not token or len(token) > 100:
        return None
    found = await queries.use_login(session, _token_hash(token), now)
    if found is None:
        return None
    user_id, name = found
    return StaffSession(user_id=user_id, name=name, expires=now + SESSION_TTL)


class CookieSigner:
    """Session cookies and form tokens, signed with the dashboard secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dump(self, staff: StaffSession) -> str:
        body = json.dumps(
            {"u": staff.user_id, "n": staff.name, "e": int(staff.expires.timestamp())},
            separators=(",", ":"),
            ensure_ascii=True,
        ).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._mac(payload.encode())}"

    def load(self, value: str | None, now: datetime) -> StaffSession | None:
        """The session in a cookie, if the signature holds and it has not expired."""
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
            )
        except (ValueError, KeyError, TypeError):
            return None
        return staff if staff.expires > now else None

    def form_token_matches(self, staff: StaffSession, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(
            given.encode(), self.form_token(staff).encode()
        )

    def form_token(self, staff: StaffSession) -> str:
        """A token forms must carry (a cross-site request cannot know it)."""
        return self._mac(f"form:{staff.user_id}:{int(staff.expires.timestamp())}".encode())
