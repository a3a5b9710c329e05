"""How well an index answers a labelled set of customer questions (``bench/kb.py`` and the
regression guard in ``tests/test_kb_sets.py`` share these definitions).

A labelled set is a YAML mapping: expected entry id -> the questions customers asked; ``none``
lists questions the knowledge base does not answer. Definitions:

- top-1: the share of answerable questions whose best entry is the expected one *and* is shown
  (answered at once, or the first of the offered buttons); an unanswered question is a miss;
- confidently wrong: the share of *all* questions answered at once with a wrong entry (for a
  ``none`` question: answered at once at all);
- off-topic handled: the share of ``none`` questions not answered at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from handlers.answers.matching import Band, KbIndex

NO_ANSWER = "none"
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def load_labelled(path: Path) -> list[tuple[str, str]]:
    """(question, expected entry id or ``none``) for every question of a labelled set."""
    labelled: dict[str, list[object]] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [(str(question), expected) for expected, qs in labelled.items() for question in qs]


@dataclass
class Quality:
    """Counts over one labelled set; the shares are properties."""

    answerable: int = 0
    right: int = 0
    answered_right: int = 0
    off_topic: int = 0
    off_topic_handled: int = 0
    confidently_wrong: int = 0
    by_script: dict[str, list[int]] = field(default_factory=dict)
    """"zh" (has Chinese characters) / "en": [right, answerable]."""
    misses: list[str] = field(default_factory=list)

    @property
    def top1(self) -> float:
        return self.right / self.answerable if self.answerable else 0.0

    @property
    def confident_wrong_rate(self) -> float:
        total = self.answerable + self.off_topic
        return self.confidently_wrong / total if total else 0.0

    @property
    def off_topic_rate(self) -> float:
        return self.off_topic_handled / self.off_topic if self.off_topic else 1.0

    def script_top1(self, script: str) -> float:
        right, total = self.by_script.get(script, [0, 0])
        return right / total if total else 0.0

    def summary(self) -> str:
        """One line with every figure, for the bench and for assertion messages."""
        return (
            f"top-1 {self.top1:.1%} of {self.answerable} (zh {self.script_top1('zh'):.1%}, "
            f"en {self.script_top1('en'):.1%}; answered at once "
            f"{self.answered_right / max(self.answerable, 1):.1%}), confidently wrong "
            f"{self.confident_wrong_rate:.1%} ({self.confidently_wrong}), off-topic not answered "
            f"{self.off_topic_rate:.1%} of {self.off_topic}"
        )


def evaluate(index: KbIndex, questions: list[tuple[str, str]]) -> Quality:
    """Match every question and count what the customer would have seen."""
    quality = Quality()
    for question, expected in questions:
        result = index.match(question)
        best = result.best.entry_id if result.best else None
        if expected == NO_ANSWER:
            quality.off_topic += 1
            quality.off_topic_handled += result.band is not Band.ANSWER
            quality.confidently_wrong += result.band is Band.ANSWER
            if result.band is Band.ANSWER:
                quality.misses.append(f"{question!r}: off-topic, answered {best}")
            continue
        quality.answerable += 1
        counts = quality.by_script.setdefault("zh" if _CJK.search(question) else "en", [0, 0])
        counts[1] += 1
        if best == expected and result.band is not Band.NONE:
            quality.right += 1
            counts[0] += 1
            quality.answered_right += result.band is Band.ANSWER
            continue
        quality.confidently_wrong += result.band is Band.ANSWER
        band = result.band.value
        quality.misses.append(f"{question!r}: expected {expected}, got {best} ({band})")
    return quality
