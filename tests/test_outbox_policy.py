"""Quiet hours and the daily cap in the customer's local time (pure rules, no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.kernel.config import OutboxConfig
from bot.kernel.files import ConfigError, load_config_file
from scheduler.policy import Defer, Send, SendPolicy, Skip
from storage.outbox import OutboxMessage, Recipient
from storage.payloads import ReadyText


def _message(**overrides: Any) -> OutboxMessage:
    values: dict[str, Any] = {
        "id": 1,
        "dedupe_key": "greeting:1",
        "customer_id": 7,
        "chat_id": 1007,
        "kind": "greeting",
        "payload": ReadyText("hello"),
        "priority": 0,
        "transactional": False,
        "due_at": datetime(2026, 1, 1, tzinfo=UTC),
        "attempts": 0,
        "care_day": None,
    }
    values.update(overrides)
    return OutboxMessage(**values)


def _recipient(**overrides: Any) -> Recipient:
    values: dict[str, Any] = {
        "id": 7,
        "language": "zh",
        "timezone": "Asia/Shanghai",
        "consent": True,
        "reachable": True,
        "erased": False,
    }
    values.update(overrides)
    return Recipient(**values)


POLICY = SendPolicy(OutboxConfig(), default_timezone="Asia/Shanghai")


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


class TestQuietHours:
    def test_evening_in_shanghai_waits_for_nine_next_morning(self) -> None:
        # 14:30 UTC is 22:30 in Shanghai (quiet) but 09:30 in New York.
        verdict = POLICY.judge(_message(), _recipient(), _utc(2026, 11, 23, 14, 30))
        assert verdict == Defer(_utc(2026, 11, 24, 1, 0), "quiet hours")

    def test_early_morning_waits_for_nine_the_same_day(self) -> None:
        verdict = POLICY.judge(_message(), _recipient(), _utc(2026, 11, 23, 23, 0))  # 07:00
        assert verdict == Defer(_utc(2026, 11, 24, 1, 0), "quiet hours")

    def test_daytime_goes_and_counts_against_the_local_day(self) -> None:
        # 17:00 UTC on the 23rd is 12:00 on the 24th in Auckland (UTC+13 in summer).
        verdict = POLICY.judge(
            _message(), _recipient(timezone="Pacific/Auckland"), _utc(2026, 11, 23, 23, 0)
        )
        assert verdict == Send(care_day="2026-11-24")

    def test_replies_and_staff_messages_ignore_quiet_hours(self) -> None:
        night = _utc(2026, 11, 23, 16, 0)  # midnight in Shanghai
        assert POLICY.judge(_message(transactional=True), _recipient(), night) == Send()
        assert POLICY.judge(_message(customer_id=None), None, night) == Send()

    def test_a_window_inside_one_day(self) -> None:
        rules = OutboxConfig.model_validate({"quiet_hours": {"start": "12:00", "end": "14:00"}})
        policy = SendPolicy(rules, default_timezone="UTC")
        london = _recipient(timezone="Europe/London")
        assert policy.judge(_message(), london, _utc(2026, 7, 1, 11, 30)) == Defer(
            _utc(2026, 7, 1, 13, 0),
            "quiet hours",  # 12:30 BST -> 14:00 BST
        )
        assert isinstance(policy.judge(_message(), london, _utc(2026, 7, 1, 13, 0)), Send)

    def test_disabled(self) -> None:
        rules = OutboxConfig.model_validate({"quiet_hours": {"enabled": False}})
        policy = SendPolicy(rules, default_timezone="UTC")
        assert isinstance(policy.judge(_message(), _recipient(), _utc(2026, 1, 1, 16)), Send)

    def test_an_unknown_zone_falls_back_to_the_default(self) -> None:
        verdict = POLICY.judge(
            _message(), _recipient(timezone="Mars/Olympus"), _utc(2026, 1, 1, 14)
        )
        assert verdict == Defer(_utc(2026, 1, 2, 1, 0), "quiet hours")


class TestNextDay:
    def test_the_next_local_day_opens_when_quiet_hours_end(self) -> None:
        zone = POLICY.zone("America/New_York")
        # 2026-11-24 02:00 UTC is still the 23rd in New York (21:00).
        opening = POLICY.next_day_opening(_utc(2026, 11, 24, 2, 0), zone)
        assert opening == _utc(2026, 11, 24, 14, 0)  # 09:00 EST on the 24th

    def test_without_quiet_hours_the_day_opens_at_midnight(self) -> None:
        rules = OutboxConfig.model_validate({"quiet_hours": {"enabled": False}})
        policy = SendPolicy(rules, default_timezone="UTC")
        opening = policy.next_day_opening(_utc(2026, 11, 23, 10), policy.zone("Asia/Shanghai"))
        assert opening == _utc(2026, 11, 23, 16, 0)


class TestWhoMayBeMessaged:
    @pytest.mark.parametrize(
        ("recipient", "reason"),
        [
            (_recipient(consent=False), "no consent to care messages"),
            (_recipient(reachable=False), "customer unreachable"),
            (_recipient(erased=True), "customer erased"),
            (None, "customer erased"),
        ],
    )
    def test_care_needs_consent_and_a_reachable_customer(
        self, recipient: Recipient | None, reason: str
    ) -> None:
        noon = _utc(2026, 11, 23, 4, 0)
        assert POLICY.judge(_message(), recipient, noon) == Skip(reason)

    def test_a_reply_to_their_own_ticket_needs_neither(self) -> None:
        recipient = _recipient(consent=False, reachable=False)
        assert POLICY.judge(_message(transactional=True), recipient, _utc(2026, 1, 1)) == Send()


def test_the_rule_file_is_checked(tmp_path: Any) -> None:
    path = tmp_path / "outbox.toml"
    path.write_text('[quiet_hours]\nstart = "21:00"\nend = "21:00"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"outbox\.toml: quiet_hours: .*enabled = false"):
        load_config_file(path, OutboxConfig)
    path.write_text("[limits]\nper_secnd = 30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"outbox\.toml: limits\.per_secnd: unknown key"):
        load_config_file(path, OutboxConfig)
