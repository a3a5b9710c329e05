"""The staff groups' rules in ``tickets.toml`` (``[groups.<name>]``, ``[[routing]]``,
``[[staff]]``, ``[desk]``) are checked at start-up: a wrong key or value stops it with the file
and the key named; good rules route as written (first match wins, ``main`` otherwise)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.kernel.config import load_config
from bot.kernel.files import ConfigError
from bot.settings import EXAMPLE_CONFIG_DIR

GOOD = """
[desk]
default_role = "agent"

[groups.vip]
assign = "round_robin"

[groups.intl]
assign = "least_open"
escalate_to_leads = false

[[routing]]
group = "vip"
tier = "vip"

[[routing]]
group = "intl"
language = "en"
source = ["complaint", "question"]

[[routing]]
group = "vip"
category = "billing"

[[staff]]
user_id = 7001
role = "lead"
groups = ["vip"]
languages = ["en", "zh"]
"""


def _config_dir(tmp_path: Path, extra: str) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, directory)
    tickets = directory / "tickets.toml"
    shipped = tickets.read_text(encoding="utf-8").split("\n[desk]\n")[0]  # ours replaces it
    tickets.write_text(shipped + "\n" + extra, encoding="utf-8")
    return directory


def test_good_rules_route_first_match_and_name_roles(tmp_path: Path) -> None:
    rules = load_config(_config_dir(tmp_path, GOOD)).tickets

    def route(**facts: str) -> str:
        ticket = {
            "category": "delivery",
            "language": "zh",
            "tier": "normal",
            "source": "complaint",
        }
        return rules.route(**{**ticket, **facts})

    assert route(tier="vip", language="en") == "vip"  # first match wins
    assert route(language="en") == "intl"
    assert route(language="en", source="survey") == "main"
    assert route(category="billing") == "vip"
    assert route() == "main"
    assert rules.group_rules("intl").assign == "least_open"
    assert rules.group_rules("main").assign == "manual"
    assert (rules.role_of(7001), rules.role_of(7002)) == ("lead", "agent")
    assert (rules.leads_of("vip"), rules.leads_of("intl")) == ([7001], [])


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ('[[routing]]\ngroup = "vip"\ncolour = "red"\n', "routing.0.colour: unknown key"),
        ('[[routing]]\ngroup = "vip"\nlanguage = "fr"\n', "routing.0.language: unknown language"),
        ('[[routing]]\ngroup = "vip"\nsource = "fax"\n', "routing.0.source: unknown source"),
        ('[[routing]]\ngroup = "vip"\ncategory = "food"\n', "routing: rule 1 (group 'vip')"),
        ('[[routing]]\ngroup = "vip"\ntier = "gold"\n', "routing.0.tier: unknown tier 'gold'"),
        ('[[routing]]\ngroup = "VIP!"\n', "routing.0.group"),
        ('[groups.vip]\nassign = "random"\n', "groups.vip.assign"),
        ('[[staff]]\nuser_id = 1\nrole = "boss"\n', "staff.0.role"),
        ("[[staff]]\nuser_id = 1\n[[staff]]\nuser_id = 1\n", "staff: entry 2: user_id 1"),
        ('[desk]\ndefault_role = "owner"\n', "desk.default_role"),
    ],
)
def test_a_wrong_rule_names_the_file_and_the_key(tmp_path: Path, extra: str, where: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(_config_dir(tmp_path, extra))
    assert str(raised.value).startswith(str(tmp_path / "config" / "tickets.toml"))
    assert where in str(raised.value), str(raised.value)
