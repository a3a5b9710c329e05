"""Survey files are validated at start-up: a malformed one stops it with the file, the key and
what was expected."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app as cli_app
from bot.kernel.config import load_config
from bot.kernel.files import ConfigError
from bot.kernel.survey_config import load_surveys

CONFIG = Path(__file__).resolve().parents[1] / "bot" / "example_config"


def broken_config(tmp_path: Path, survey: str, old: str, new: str) -> tuple[Path, Path]:
    """A copy of the shipped configuration with one survey file changed: (dir, that file)."""
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    path = config / "surveys" / f"{survey}.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return config, path


CASES = [
    pytest.param(
        "csat",
        'type = "scale"',
        'type = "stars"',
        "questions.0.type: Input should be 'scale', 'nps', 'choice' or 'text'",
        id="unknown question type",
    ),
    pytest.param(
        "csat",
        'ask_if = { question = "score", at_most = 2 }',
        'ask_if = { question = "scroe", at_most = 2 }',
        "questions.1.ask_if.question: 'scroe' is not an earlier scale or nps question of this "
        "survey (expected one of: score)",
        id="branch to a missing question",
    ),
    pytest.param(
        "delivery",
        'text = { en = "Service attitude", zh = "服务态度" }',
        'text = { zh = "服务态度" }',
        "questions.1.text: expected a non-empty text in en and zh; missing: en",
        id="missing English text",
    ),
    pytest.param(
        "nps",
        'tiers = ["vip", "important", "normal"]',
        'tiers = ["vip", "gold"]',
        "tiers: unknown tier 'gold' (expected one of: vip, important, normal)",
        id="unknown tier",
    ),
    pytest.param(
        "delivery",
        'trigger = { on = "order_delivered", after_days = 3 }',
        'trigger = { on = "order_delivered" }',
        "trigger: after_days: expected the days after delivery (order_delivered)",
        id="trigger without its days",
    ),
    pytest.param(
        "csat",
        'intro = { en = "Your ticket {ticket} is closed."',
        'intro = { en = "Your order {order} is closed."',
        "intro.en: unknown placeholder order (expected: {ticket})",
        id="placeholder the trigger does not give",
    ),
]


@pytest.mark.parametrize(("survey", "old", "new", "message"), CASES)
def test_a_malformed_survey_names_file_key_and_expectation(
    tmp_path: Path, survey: str, old: str, new: str, message: str
) -> None:
    config, path = broken_config(tmp_path, survey, old, new)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == f"{path}: {message}"


async def test_start_up_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, path = broken_config(tmp_path, "csat", 'type = "scale"', 'type = "stars"')
    monkeypatch.setenv("CAREBOT_CONFIG_DIR", str(config))
    monkeypatch.setenv("CAREBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, ["report", "surveys"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"carebot: {path}: questions.0.type: Input should be 'scale', 'nps', 'choice' or 'text'"
    )


def test_two_files_with_one_id_and_no_directory(tmp_path: Path) -> None:
    directory = tmp_path / "surveys"
    shutil.copytree(CONFIG / "surveys", directory)
    shutil.copy(directory / "nps.toml", directory / "nps_copy.toml")
    with pytest.raises(ConfigError) as caught:
        load_surveys(directory)
    assert str(caught.value) == (
        f"{directory / 'nps_copy.toml'}: id: 'nps' is already the id of {directory / 'nps.toml'}"
    )
    assert load_surveys(tmp_path / "none").surveys == []


def test_the_shipped_surveys() -> None:
    rules = load_config(CONFIG).surveys
    assert [survey.id for survey in rules.surveys] == ["csat", "delivery", "nps"]
    delivery = rules.survey("delivery")
    assert delivery is not None
    assert [q.dimension for q in delivery.questions] == [
        "delivery_speed",
        "service_attitude",
        "product_quality",
        None,
    ]
    csat = rules.survey("csat")
    nps = rules.survey("nps")
    assert csat is not None and nps is not None
    assert (rules.threshold(csat, "scale"), rules.threshold(nps, "nps")) == (2, 6)
    # The branch: "what went wrong?" only after a score of 2 or less.
    assert csat.next_question(0, {"score": 2}) is csat.questions[1]
    assert csat.next_question(0, {"score": 3}) is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param(
            'product_quality = { en = "Product quality", zh = "商品质量" }',
            'product_qualty = { en = "Product quality", zh = "商品质量" }',
            "dimensions.product_qualty: no question measures this dimension (expected one of: "
            "service_attitude, delivery_speed, product_quality, recommend)",
            id="a dimension no question measures",
        ),
        pytest.param(
            'recommend = { en = "Would recommend (NPS)", zh = "推荐意愿（NPS）" }',
            'recommend = { en = "Would recommend (NPS)" }',
            "dimensions.recommend: expected a non-empty text in en and zh; missing: zh",
            id="a dimension named in one language",
        ),
    ],
)
def test_dimension_names_are_checked(tmp_path: Path, old: str, new: str, message: str) -> None:
    """``settings.toml`` names each dimension for the reports, in both languages."""
    config, path = broken_config(tmp_path, "settings", old, new)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == f"{path}: {message}"


def test_dimension_and_tier_display_names() -> None:
    """What the dashboard shows for a dimension or a tier: the rule files' names, the built-in
    ones for the shipped dimensions, else the identifier made readable."""
    rules = load_config(CONFIG)
    assert rules.surveys.dimension_label("recommend", "zh") == "推荐意愿（NPS）"
    assert rules.surveys.dimension_label("packaging", "en") is None
    bare = load_surveys(CONFIG / "none")
    assert bare.dimension_label("delivery_speed", "zh") == "配送速度"
    vip, important, normal = rules.tiers.tiers
    assert (vip.label("en"), vip.label("zh"), important.label("zh")) == (
        "VIP",
        "VIP 客户",
        "重要客户",
    )
    unnamed = normal.model_copy(update={"en": None, "zh": None})
    assert (unnamed.label("en"), unnamed.label("zh")) == ("Normal", "Normal")
