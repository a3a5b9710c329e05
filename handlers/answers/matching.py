"""Knowledge-base matching: plain text in, the best entries and a confidence band out.

Free of Telegram and of the database, so any channel (and ``bench/kb.py``) can use it.

Why this scorer (measured on ``tests/data/kb_questions.yaml``, see ``bench/kb.py --scorers``):
whole-string rapidfuzz scorers compare letters, and customers paraphrase ("where's my package"
against "how do I track my order"); ``fuzz.ratio`` and ``token_set_ratio`` reached about 80 %
top-1 on hand-written questions and ``WRatio`` about 60 %. Scoring the *words* that matter does
better: every question is cut into features — Chinese characters and character bigrams (no
segmenter needed, and a short Chinese question is compared by what it contains, not drowned by
long ones), English words stemmed lightly — and each feature is weighted by how rare it is among
the entries (IDF), so "退货" or "invoice" count and "怎么" or "how" barely do. The similarity is
an asymmetric Tversky index: words of the question the entry does not explain cost more than
extra words of the entry. rapidfuzz still does two jobs: it corrects misspelt English words
against the knowledge base's own vocabulary ("somthing", "retrun", "shiping"), and a small part
of the score is ``fuzz.ratio`` of the normalised strings, which breaks ties between paraphrases.

Text is normalised once (entries at build time, the question once per match): NFKC (full-width
to half-width), case folding, traditional to simplified Chinese (OpenCC ``t2s``), punctuation and
symbols removed, English contractions expanded, filler words dropped, synonyms mapped to one
word (operator-editable, ``kb/synonyms.yaml``).
"""

from __future__ import annotations

import heapq
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from rapidfuzz import fuzz, process

_CJK_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_TOKEN = re.compile(f"[{_CJK_CHARS}]+|[^\\W_{_CJK_CHARS}]+")
_APOSTROPHES = str.maketrans("", "", "'’`´")

# Words that carry no intent in a customer question (kept small on purpose: "not", "how", "when"
# and "where" stay, they tell "not working" from "working" and tracking from delivery times).
_EN_STOP_TEXT = """
    a an the i me my mine we our us you your yours it its this that these those there here
    is are am was were be been being do does did can could would will shall should may might
    must to of in on at by for from with about as and or but so if then than too very just
    please pls plz hi hello hey dear thanks thank thx any some yet still also get got have has
    had one thing things something say says said sir madam ok okay"""
EN_STOP_WORDS = frozenset(_EN_STOP_TEXT.split())
EN_CONTRACTIONS = {
    "cant": "can not",
    "cannot": "can not",
    "dont": "do not",
    "doesnt": "does not",
    "didnt": "did not",
    "isnt": "is not",
    "arent": "are not",
    "wasnt": "was not",
    "werent": "were not",
    "havent": "have not",
    "hasnt": "has not",
    "hadnt": "had not",
    "wont": "will not",
    "wouldnt": "would not",
    "couldnt": "could not",
    "shouldnt": "should not",
    "whats": "what",
    "wheres": "where",
    "whens": "when",
    "hows": "how",
    "whos": "who",
    "thats": "that",
    "theres": "there",
    "im": "i",
    "ive": "i have",
    "id": "i",
    "ill": "i will",
    "youre": "you are",
}
# Chinese politeness and particles: removed from the question and the entries before scoring.
ZH_FILLERS = (
    "请问",
    "你好",
    "您好",
    "麻烦",
    "一下",
    "谢谢",
    "你们",
    "我们",
    "是不是",
    "吗",
    "呢",
    "啊",
    "吧",
    "呀",
    "哦",
    "嘛",
    "啦",
    "哈",
    "的",
    "了",
    "我",
)
_ZH_FILLER = re.compile("|".join(re.escape(word) for word in sorted(ZH_FILLERS, key=len)[::-1]))

SPELLING_MIN_LENGTH = 5
SPELLING_CUTOFF = 80.0
CANDIDATES = 64  # paraphrases scored exactly per question
POSTINGS_BUDGET = 400  # paraphrase votes counted per question when choosing candidates
TVERSKY_QUESTION = 0.7  # weight of question features the entry does not explain
TVERSKY_ENTRY = 0.3  # weight of entry features the question does not mention
RATIO_SHARE = 0.1  # share of fuzz.ratio in the final score (breaks ties between paraphrases)


class Band(Enum):
    """What to do with a question, by the confidence of its best match."""

    ANSWER = "answer"
    SUGGEST = "suggest"
    NONE = "none"


@dataclass(frozen=True)
class Thresholds:
    """Scores are 0-100. At or above ``answer`` (and clear of the runner-up by ``margin``): answer;
    at or above ``suggest``: offer the best few as buttons; below: say so and offer a person."""

    answer: float = 45.0
    suggest: float = 25.0
    margin: float = 3.0


@dataclass(frozen=True)
class Match:
    entry_id: str
    score: float


@dataclass(frozen=True)
class MatchResult:
    band: Band
    matches: tuple[Match, ...]
    """Best first, one per entry, at most ``limit``."""
    normalised: str
    """The question as stored for reports: normalised, filler words kept."""

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc  # 5 ms to load its dictionaries: only when Chinese is first seen

    return opencc.OpenCC("t2s")


def normalise(text: str) -> str:
    """NFKC, lower case, simplified Chinese, no punctuation, one space between words.

    Chinese runs are written without spaces ("我 想 退货" and "我想退货" are the same question).
    """
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    if has_cjk(folded):
        folded = _t2s().convert(folded)
    parts: list[str] = []
    for token in _TOKEN.findall(folded):
        if parts and has_cjk(token[0]) and has_cjk(parts[-1][-1]):
            parts[-1] += token
        else:
            parts.append(token)
    return " ".join(parts)


def stem(word: str) -> str:
    """A light English stemmer: plural and tense endings, so "returns"/"returned" meet "return"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith(("ies", "ied")) and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif (word.endswith("ed") and len(word) > 4) or word.endswith(
        ("sses", "xes", "zes", "ches", "shes")
    ):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


class _Synonyms:
    """Maps each synonym to the first word of its group (Chinese by substring, English by word)."""

    def __init__(self, groups: Mapping[str, Sequence[Sequence[str]]]) -> None:
        self.zh: dict[str, str] = {}
        self.en: dict[str, str] = {}
        for group in groups.get("zh", ()):
            canonical = normalise(group[0])
            for word in group:
                self.zh[normalise(word)] = canonical
        for group in groups.get("en", ()):
            canonical = stem(normalise(group[0]))
            for word in group:
                self.en[stem(normalise(word))] = canonical
        keys = sorted(self.zh, key=len, reverse=True)
        self._zh_pattern = re.compile("|".join(map(re.escape, keys))) if keys else None

    def chinese(self, run: str) -> str:
        if self._zh_pattern is None:
            return run
        return self._zh_pattern.sub(lambda match: self.zh[match.group(0)], run)


def _english_words(token: str) -> list[str]:
    expanded = EN_CONTRACTIONS.get(token, token)
    return [word for word in expanded.split() if word not in EN_STOP_WORDS]


class _Side:
    """The index of one script: questions with Chinese characters, or those without."""

    def __init__(self) -> None:
        self.entry_of: list[int] = []
        self.texts: list[str] = []
        self.features_of: list[frozenset[str]] = []
        self.weight_of: list[float] = []
        self.postings: dict[str, list[int]] = {}
        self.idf: dict[str, float] = {}
        self.unknown_weight = 1.0
        self._vocabulary_set: frozenset[str] = frozenset()
        self._by_initial: dict[str, list[str]] = {}
        self._corrections: dict[str, str] = {}

    def correct(self, word: str) -> str:
        """The knowledge base's own word nearest to a misspelt one (or the word itself)."""
        if len(word) < SPELLING_MIN_LENGTH or not word.isalpha() or word in self._vocabulary_set:
            return word
        cached = self._corrections.get(word)
        if cached is None:
            # Only words with the same first letter: typos rarely hit it, and it keeps the
            # search to a few hundred words in a large knowledge base.
            found = process.extractOne(
                word,
                self._by_initial.get(word[0], ()),
                scorer=fuzz.ratio,
                score_cutoff=SPELLING_CUTOFF,
            )
            cached = found[0] if found else word
            if len(self._corrections) > 10_000:
                self._corrections.clear()
            self._corrections[word] = cached
        return cached

    def finish(self, entry_count: int, vocabulary: set[str]) -> None:
        document_frequency: dict[str, set[int]] = {}
        for index, features in enumerate(self.features_of):
            for feature in features:
                self.postings.setdefault(feature, []).append(index)
                document_frequency.setdefault(feature, set()).add(self.entry_of[index])
        self.idf = {
            feature: math.log(1 + entry_count / len(entries))
            for feature, entries in document_frequency.items()
        }
        self.unknown_weight = math.log(1 + max(entry_count, 1))
        self.weight_of = [sum(self.idf[f] for f in features) for features in self.features_of]
        self._vocabulary_set = frozenset(vocabulary)
        for word in sorted(vocabulary):
            self._by_initial.setdefault(word[0], []).append(word)


class KbIndex:
    """Every question of every entry, normalised and weighted once; ``match`` per customer text.

    Immutable after ``build``: a reload builds a new index and swaps it in.
    """

    def __init__(self, thresholds: Thresholds, synonyms: _Synonyms) -> None:
        self.thresholds = thresholds
        self._synonyms = synonyms
        self._sides = {"zh": _Side(), "en": _Side()}
        self.entry_ids: list[str] = []

    @classmethod
    def build(
        cls,
        entries: Iterable[tuple[str, Mapping[str, Sequence[str]]]],
        *,
        synonyms: Mapping[str, Sequence[Sequence[str]]] | None = None,
        thresholds: Thresholds | None = None,
    ) -> KbIndex:
        """``entries``: (id, {language: [questions]}). Questions go to the side of their script,
        whatever language they are listed under."""
        index = cls(thresholds or Thresholds(), _Synonyms(synonyms or {}))
        vocabularies: dict[str, set[str]] = {"zh": set(), "en": set()}
        for entry_id, questions in entries:
            entry = len(index.entry_ids)
            index.entry_ids.append(entry_id)
            for question in (q for qs in questions.values() for q in qs):
                text = normalise(question)
                if not text:
                    continue
                script = "zh" if has_cjk(text) else "en"
                side = index._sides[script]
                for token in _TOKEN.findall(text):
                    if not has_cjk(token):
                        vocabularies[script].update(_english_words(token))
                side.entry_of.append(entry)
                side.texts.append(text)
                side.features_of.append(index._features(text, None))
        for script, side in index._sides.items():
            side.finish(len(index.entry_ids), vocabularies[script])
        return index

    def __len__(self) -> int:
        return len(self.entry_ids)

    def _features(self, text: str, side: _Side | None) -> frozenset[str]:
        features: set[str] = set()
        for token in _TOKEN.findall(text):
            if has_cjk(token):
                run = _ZH_FILLER.sub("", self._synonyms.chinese(token))
                features.update(run)
                features.update(run[i : i + 2] for i in range(len(run) - 1))
                continue
            for word in _english_words(token):
                if side is not None:
                    word = side.correct(word)
                stemmed = stem(word)
                features.add(self._synonyms.en.get(stemmed, stemmed))
        return frozenset(features)

    def match(self, text: str, limit: int = 3) -> MatchResult:
        """The best ``limit`` entries for a customer's text and what to do with them."""
        normalised = normalise(text)
        side = self._sides["zh" if has_cjk(normalised) else "en"]
        features = self._features(normalised, side)
        if not features or not side.texts:
            return MatchResult(Band.NONE, (), normalised)
        idf, unknown, postings = side.idf, side.unknown_weight, side.postings
        weights = {feature: idf.get(feature, unknown) for feature in features}
        question_weight = sum(weights.values())
        # Candidates come from the rarest features, within a budget of postings: a common
        # character or word would make this a scan of the whole knowledge base and tells little.
        # The candidates are then scored exactly, on all features.
        known = sorted((f for f in features if f in postings), key=lambda f: len(postings[f]))
        rare: list[str] = []
        budget = POSTINGS_BUDGET
        for feature in known:
            if rare and len(postings[feature]) > budget:
                break
            rare.append(feature)
            budget -= len(postings[feature])
        votes: dict[int, float] = {}
        get = votes.get
        for feature in rare:
            weight = weights[feature]
            for paraphrase in postings[feature]:
                votes[paraphrase] = get(paraphrase, 0.0) + weight
        if len(votes) > CANDIDATES:
            candidates = heapq.nlargest(CANDIDATES, votes, key=votes.__getitem__)
        else:
            candidates = list(votes)
        best: dict[int, tuple[float, int]] = {}
        a, b = TVERSKY_QUESTION, TVERSKY_ENTRY
        entry_of, weight_of, features_of = side.entry_of, side.weight_of, side.features_of
        for paraphrase in candidates:
            shared = sum(weights[f] for f in features & features_of[paraphrase])
            score = shared / (
                shared + a * (question_weight - shared) + b * (weight_of[paraphrase] - shared)
            )
            entry = entry_of[paraphrase]
            previous = best.get(entry)
            if previous is None or score > previous[0]:
                best[entry] = (score, paraphrase)
        ranked = sorted(best.items(), key=lambda item: item[1][0], reverse=True)[: limit + 2]
        matches = sorted(
            (
                Match(
                    self.entry_ids[entry],
                    round(
                        (1 - RATIO_SHARE) * 100 * score
                        + RATIO_SHARE * fuzz.ratio(normalised, side.texts[paraphrase]),
                        1,
                    ),
                )
                for entry, (score, paraphrase) in ranked
            ),
            key=lambda match: match.score,
            reverse=True,
        )[:limit]
        return MatchResult(self._band(matches), tuple(matches), normalised)

    def _band(self, matches: Sequence[Match]) -> Band:
        if not matches or matches[0].score < self.thresholds.suggest:
            return Band.NONE
        top = matches[0].score
        runner_up = matches[1].score if len(matches) > 1 else 0.0
        if top >= self.thresholds.answer and top - runner_up >= self.thresholds.margin:
            return Band.ANSWER
        return Band.SUGGEST
