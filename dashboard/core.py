"""The dashboard's configuration, shared by its pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.clock import Clock
from bot.kernel.config import Config
from bot.kernel.texts import Texts
from dashboard.auth import CookieSigner

PACKAGE_DIR = Path(__file__).parent
STATIC_DIR = PACKAGE_DIR / "static"
CATALOGUE_DIR = PACKAGE_DIR / "catalogue"

StaffCheck = Callable[[int], Awaitable[bool | None]]
"""Whether a Telegram user id is (still) in the staff group: True or False, or None when that
could not be learnt just now. The bot passes its own check (``handlers.staff.telegram``: the same
``getChatMember`` answers, cached for ``relay.staff_check_seconds``, as staff commands use)."""


def load_catalogue() -> Texts:
    """The dashboard's own strings (``catalogue/en.toml``, ``zh.toml``; same keys checked)."""
    return Texts.load(CATALOGUE_DIR)


@dataclass
class Dashboard:
    """What the pages need: the database, the signing secret, the clock and the shop's zone,
    who is still staff (``staff_check``; without one, as in the demo, a stored session is
    enough), and the operator's rules, whose display names the pages show (``rules``: tiers,
    categories, survey dimensions, canned replies; without them, identifiers made readable)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    secret: bytes
    clock: Clock
    timezone: str = "UTC"
    secure_cookies: bool = False
    texts: Texts = field(default_factory=load_catalogue)
    staff_check: StaffCheck | None = None
    rules: Config | None = None

    @property
    def signer(self) -> CookieSigner:
        return CookieSigner(self.secret)
