"""Survey definitions: one TOML file per survey in ``CAREBOT_CONFIG_DIR/surveys/``, plus
``settings.toml`` there for what holds across surveys (fatigue, recovery thresholds, the
planner's pace). Validated at start-up (``load_surveys``, called by
``bot.kernel.config.load_config``): an error names the file, the key and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.kernel.files import ConfigError, load_config_file

SETTINGS_FILE = "settings.toml"
ID = r"^[a-z][a-z0-9_]{0,31}$"
QUESTION_TYPES = ("scale", "nps", "choice", "text")
SCORED = ("scale", "nps")
SCORE_RANGE = {"scale": (1, 5), "nps": (0, 10)}
DEFAULT_SCALE_LABELS = ("😠 1", "🙁 2", "😐 3", "🙂 4", "😍 5")
TICKET_CLOSED = "ticket_closed"
ORDER_DELIVERED = "order_delivered"
PERIODIC = "periodic"
INTRO_PLACEHOLDERS = {TICKET_CLOSED: {"ticket"}, ORDER_DELIVERED: {"order"}, PERIODIC: set()}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Localized(_Strict):
    """A text in both languages (both required)."""

    en: str = Field(max_length=1000)
    zh: str = Field(max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _both_languages(cls, data: object) -> object:
        if not isinstance(data, dict):
            raise ValueError('expected a table with both texts: { en = "…", zh = "…" }')
        missing = [language for language in ("en", "zh") if not str(data.get(language) or "")]
        if missing:
            raise ValueError(
                f"expected a non-empty text in en and zh; missing: {', '.join(missing)}"
            )
        return data

    def get(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class Option(_Strict):
    """One answer of a single-choice question."""

    id: str = Field(pattern=ID)
    en: str = Field(min_length=1, max_length=60)
    zh: str = Field(min_length=1, max_length=60)

    def label(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class AskIf(_Strict):
    """Ask a question only when an earlier score is within bounds (``at_most = 2``)."""

    question: str
    at_most: int | None = Field(default=None, ge=0, le=10)
    at_least: int | None = Field(default=None, ge=0, le=10)

    @model_validator(mode="after")
    def _a_bound(self) -> AskIf:
        if self.at_most is None and self.at_least is None:
            raise ValueError("expected at_most or at_least (or both)")
        return self

    def holds(self, score: int | None) -> bool:
        if score is None:
            return False
        return (self.at_most is None or score <= self.at_most) and (
            self.at_least is None or score >= self.at_least
        )


class Question(_Strict):
    """One question: a 1-5 scale with emoji labels, NPS 0-10, a single choice or free text."""

    id: str = Field(pattern=ID)
    type: Literal["scale", "nps", "choice", "text"]
    text: Localized
    dimension: str | None = Field(default=None, pattern=ID)
    optional: bool = False
    labels: list[str] | None = None
    options: list[Option] = []
    ask_if: AskIf | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> Question:
        if self.labels is not None and (
            self.type != "scale" or len(self.labels) != 5 or not all(self.labels)
        ):
            raise ValueError("labels: expected 5 non-empty labels, for a scale question only")
        if self.type == "choice":
            ids = [option.id for option in self.options]
            if len(ids) < 2 or len(set(ids)) != len(ids):
                raise ValueError("options: expected at least 2 options with distinct ids")
        elif self.options:
            raise ValueError("options: only a choice question has options")
        if self.dimension is not None and self.type not in SCORED:
            raise ValueError("dimension: only scale and nps questions have a dimension")
        return self

    @property
    def scored(self) -> bool:
        return self.type in SCORED

    def scale_labels(self) -> tuple[str, ...]:
        return tuple(self.labels) if self.labels else DEFAULT_SCALE_LABELS


class Trigger(_Strict):
    """When a survey is sent: ``delay_minutes`` after a ticket closes, ``after_days`` after an
    order is delivered, or every ``every_days`` (NPS)."""

    on: Literal["ticket_closed", "order_delivered", "periodic"]
    delay_minutes: int = Field(default=0, ge=0, le=60 * 24 * 7)
    after_days: int | None = Field(default=None, ge=0, le=365)
    every_days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _fits_trigger(self) -> Trigger:
        if self.on == ORDER_DELIVERED and self.after_days is None:
            raise ValueError("after_days: expected the days after delivery (order_delivered)")
        if self.on == PERIODIC and self.every_days is None:
            raise ValueError("every_days: expected the days between two surveys (periodic)")
        if self.on != ORDER_DELIVERED and self.after_days is not None:
            raise ValueError("after_days: only for on = 'order_delivered'")
        if self.on != PERIODIC and self.every_days is not None:
            raise ValueError("every_days: only for on = 'periodic'")
        return self


class Recovery(_Strict):
    """A score at or below a threshold opens a recovery ticket (unset: ``settings.toml``'s)."""

    scale_at_most: int | None = Field(default=None, ge=0, le=5)
    nps_at_most: int | None = Field(default=None, ge=-1, le=10)
    category: str | None = Field(default=None, pattern=ID)


class SurveyDefinition(_Strict):
    """One survey file."""

    id: str = Field(pattern=ID)
    enabled: bool = True
    trigger: Trigger
    tiers: list[str] = []
    """The audience: customers of these tiers (empty: every tier)."""
    intro: Localized | None = None
    questions: list[Question] = Field(min_length=1, max_length=20)
    remind_after_hours: float = Field(default=24, ge=0, le=24 * 30)
    """One reminder this long after the invitation (or the last answer); 0: none."""
    expire_after_hours: float = Field(default=72, gt=0, le=24 * 90)
    fatigue_exempt: bool = False
    """Sent even within the fatigue period and while a ticket is open (CSAT)."""
    recovery: Recovery = Recovery()

    def question(self, question_id: str | None) -> tuple[int, Question] | None:
        for index, question in enumerate(self.questions):
            if question.id == question_id:
                return index, question
        return None

    def next_question(self, after: int, scores: dict[str, int | None]) -> Question | None:
        """The first question after position ``after`` whose ``ask_if`` holds."""
        for question in self.questions[after + 1 :]:
            if question.ask_if is None or question.ask_if.holds(
                scores.get(question.ask_if.question)
            ):
                return question
        return None

    @property
    def digest(self) -> str:
        """What identifies this content (a changed file gets a new definition row)."""
        dumped = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(dumped.encode()).hexdigest()


class FatigueConfig(_Strict):
    days: int = Field(default=14, ge=0, le=365)
    """At most one survey per customer in this many days, across all surveys (0: no cap)."""


class RecoveryDefaults(_Strict):
    scale_at_most: int = Field(default=2, ge=0, le=5)
    nps_at_most: int = Field(default=6, ge=-1, le=10)
    category: str = Field(default="other", pattern=ID)
    """The recovery ticket's category (tickets.toml); its priority follows the tier."""
    wait_minutes: int = Field(default=60, ge=0, le=60 * 24 * 7)
    """A low score in a response left unfinished opens its ticket after this long."""


class PlannerConfig(_Strict):
    check_seconds: int = Field(default=60, ge=5, le=3600)
    max_invitations_per_run: int = Field(default=5000, ge=1, le=1_000_000)
    periodic_check_minutes: int = Field(default=60, ge=1, le=24 * 60)
    """Periodic surveys (NPS) look through all customers: not at every run, this often."""


DEFAULT_DIMENSIONS = {
    "delivery_speed": {"en": "Delivery speed", "zh": "配送速度"},
    "service_attitude": {"en": "Service attitude", "zh": "服务态度"},
    "product_quality": {"en": "Product quality", "zh": "商品质量"},
    "recommend": {"en": "Would recommend", "zh": "推荐意愿"},
}


class SurveySettings(_Strict):
    """``surveys/settings.toml``."""

    fatigue: FatigueConfig = FatigueConfig()
    recovery: RecoveryDefaults = RecoveryDefaults()
    planner: PlannerConfig = PlannerConfig()
    dimensions: dict[str, Localized] = {}
    """What each dimension is called in reports (the dashboard), in both languages; the
    shipped dimensions have names already (``DEFAULT_DIMENSIONS``)."""

    @model_validator(mode="after")
    def _dimension_names(self) -> SurveySettings:
        for name in self.dimensions:
            if not re.fullmatch(ID, name):
                raise ValueError(
                    f"dimensions.{name}: expected a dimension id (lowercase letters, digits, _)"
                )
        return self


class SurveyConfig(_Strict):
    """Every survey, in file-name order, with the shared settings."""

    settings: SurveySettings = SurveySettings()
    surveys: list[SurveyDefinition] = []

    def survey(self, survey_id: str) -> SurveyDefinition | None:
        return next((survey for survey in self.surveys if survey.id == survey_id), None)

    def threshold(self, survey: SurveyDefinition, kind: str) -> int:
        return recovery_threshold(survey, kind, self.settings.recovery)

    def recovery_category(self, survey: SurveyDefinition) -> str:
        return survey.recovery.category or self.settings.recovery.category

    def dimension_label(self, name: str, language: str) -> str | None:
        """The display name of a dimension (``settings.toml`` ``[dimensions]``), or None."""
        found = self.settings.dimensions.get(name)
        if found is not None:
            return found.get(language)
        default = DEFAULT_DIMENSIONS.get(name)
        return default.get(language, default["en"]) if default is not None else None

    @property
    def dimensions(self) -> list[str]:
        """Every dimension a question measures, in the order the surveys ask them."""
        names: dict[str, None] = {}
        for survey in self.surveys:
            names.update((q.dimension, None) for q in survey.questions if q.dimension)
        return list(names)


def recovery_threshold(
    survey: SurveyDefinition, kind: str, defaults: RecoveryDefaults | None = None
) -> int:
    """The highest score of ``kind`` (scale or nps) that opens a recovery ticket: the survey's
    own, else ``settings.toml``'s."""
    own = survey.recovery.nps_at_most if kind == "nps" else survey.recovery.scale_at_most
    if own is not None:
        return own
    defaults = defaults or RecoveryDefaults()
    return defaults.nps_at_most if kind == "nps" else defaults.scale_at_most


def _check_survey(
    survey: SurveyDefinition, tiers: Collection[str], categories: Collection[str]
) -> tuple[str, str] | None:
    """What the model alone cannot see: branches, placeholders, names from other files.
    Returns (key, what was expected) for the first problem."""
    seen: dict[str, Question] = {}
    for index, question in enumerate(survey.questions):
        if question.id in seen:
            return f"questions.{index}.id", f"expected a distinct id, {question.id!r} is repeated"
        condition = question.ask_if
        if condition is not None:
            scored = [earlier for earlier, q in seen.items() if q.scored]
            target = seen.get(condition.question)
            if target is None or not target.scored:
                known = ", ".join(scored) or "none"
                return (
                    f"questions.{index}.ask_if.question",
                    f"{condition.question!r} is not an earlier scale or nps question of this "
                    f"survey (expected one of: {known})",
                )
        seen[question.id] = question
    if survey.intro is not None:
        allowed = INTRO_PLACEHOLDERS[survey.trigger.on]
        for language in ("en", "zh"):
            used = set(_PLACEHOLDER.findall(survey.intro.get(language)))
            if used - allowed:
                names = ", ".join(f"{{{name}}}" for name in sorted(allowed)) or "none"
                return (
                    f"intro.{language}",
                    f"unknown placeholder {', '.join(sorted(used - allowed))} (expected: {names})",
                )
    unknown_tiers = [tier for tier in survey.tiers if tier not in tiers]
    if unknown_tiers and tiers:
        return "tiers", f"unknown tier {unknown_tiers[0]!r} (expected one of: {', '.join(tiers)})"
    category = survey.recovery.category
    if category is not None and categories and category not in categories:
        return (
            "recovery.category",
            f"unknown category {category!r} (expected one of: {', '.join(categories)})",
        )
    return None


def load_surveys(
    directory: Path, *, tiers: Collection[str] = (), categories: Collection[str] = ()
) -> SurveyConfig:
    """Every ``*.toml`` in ``directory`` (``settings.toml`` aside) as a survey; no directory,
    no surveys. ``tiers`` and ``categories`` are the names the other rule files define."""
    if not directory.is_dir():
        return SurveyConfig()
    settings_path = directory / SETTINGS_FILE
    settings = (
        load_config_file(settings_path, SurveySettings)
        if settings_path.exists()
        else SurveySettings()
    )
    if categories and settings.recovery.category not in categories:
        raise ConfigError(
            f"{settings_path}: recovery.category: unknown category "
            f"{settings.recovery.category!r} (expected one of: {', '.join(categories)})"
        )
    surveys: list[SurveyDefinition] = []
    owners: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name == SETTINGS_FILE:
            continue
        survey = load_config_file(path, SurveyDefinition)
        problem = _check_survey(survey, tiers, categories)
        if problem is not None:
            raise ConfigError(f"{path}: {problem[0]}: {problem[1]}")
        if survey.id in owners:
            raise ConfigError(
                f"{path}: id: {survey.id!r} is already the id of {owners[survey.id]}"
            )
        owners[survey.id] = path
        surveys.append(survey)
    config = SurveyConfig(settings=settings, surveys=surveys)
    measured = config.dimensions
    for name in settings.dimensions:
        if name not in measured:
            raise ConfigError(
                f"{settings_path}: dimensions.{name}: no question measures this dimension "
                f"(expected one of: {', '.join(measured) or 'none'})"
            )
    return config


def definition_from_json(data: dict[str, Any]) -> SurveyDefinition:
    """A definition stored with a response, back as a model."""
    return SurveyDefinition.model_validate(data)
