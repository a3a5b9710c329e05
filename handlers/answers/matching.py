"""Knowledge-base matching: plain text in, the best entries and a confidence band out.

Free of Telegram and of the database, so any channel (and ``bench/kb.py``) can use it.

Why this scorer (measured on ``tests/data/kb_questions.yaml``, see ``bench/kb.py``):
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
symbols removed, English contractions expanded, filler words dropped, synonyms and phrases mapped
to one word (operator-editable, ``kb/synonyms.yaml``; "can not" -> "unable" keeps "can I not
pay online" apart from "I cannot pay").

What customers really write (issue 19, ``tests/data/kb_dev.yaml``) added four things. Both
languages share one feature space, and a message with both scripts ("tracking number怎么查") is
also scored per script, each part against the questions of its own language. A long message (a
story, then the question) is also scored clause by clause, a light clause counting less. Beside
its best question, an entry is scored with its whole vocabulary: all its questions in both
languages and its ``keywords`` (customers' words the questions do not use, in the kb files).
Spelling corrections need an edit distance of 1 (2 from 8 letters), so "taking" stays itself.
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
from rapidfuzz.distance import OSA

_CJK_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_TOKEN = re.compile(f"[{_CJK_CHARS}]+|[^\\W_{_CJK_CHARS}]+")
_LATIN = re.compile(r"[a-z]")
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
    "是什么",
    "是多少",
    "有没有",
    "能不能",
    "可不可以",
    "可以",
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
CANDIDATES = 64  # paraphrases scored exactly per question
POSTINGS_BUDGET = 400  # paraphrase votes counted per question when choosing candidates
TVERSKY_QUESTION = 0.7  # weight of question features the entry does not explain
TVERSKY_ENTRY = 0.3  # weight of entry features the question does not mention
RATIO_SHARE = 0.1  # share of fuzz.ratio in the final score (breaks ties between paraphrases)
ENTRY_CANDIDATES = 32  # entries whose whole vocabulary is scored per question
TVERSKY_VOCABULARY = 0.05  # weight of an entry's vocabulary the question does not mention
VOCABULARY_SHARE = 0.6  # share of the vocabulary score in an entry's score
CLAUSE_FACTOR = 0.95  # a clause of a longer message scores a little less than the whole
SHORT_PART_WEIGHT = 9.0  # a part's features weighing less than this (IDF) count less
MAX_CLAUSES = 8  # clauses of a long message scored on their own (the first 2, the last 6)


class Band(Enum):
    """What to do with a question, by the confidence of its best match."""

    ANSWER = "answer"
    SUGGEST = "suggest"
    NONE = "none"


@dataclass(frozen=True)
class Thresholds:
    """Scores are 0-100. At or above ``answer`` (and clear of the runner-up by ``margin``): answer;
    at or above ``suggest``: offer the best few as buttons; below: say so and offer a person."""

    answer: float = 50.0
    suggest: float = 25.0
    margin: float = 6.0


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
    """Maps each synonym to the first word of its group: Chinese by substring, English by word,
    and English groups' phrases ("money back", "can not") by whole words, before the rest."""

    def __init__(self, groups: Mapping[str, Sequence[Sequence[str]]]) -> None:
        self.zh: dict[str, str] = {}
        self.en: dict[str, str] = {}
        self.phrases: dict[str, str] = {}
        for group in groups.get("zh", ()):
            canonical = normalise(group[0])
            for word in group:
                self.zh[normalise(word)] = canonical
        for group in groups.get("en", ()):
            head = expand_contractions(normalise(group[0]))
            canonical = stem(head) if " " not in head else head
            for word in group:
                text = expand_contractions(normalise(word))
                if " " in text:
                    self.phrases[text] = canonical
                else:
                    self.en[stem(text)] = canonical
        self._zh_pattern = _alternation(self.zh)
        self._phrase_pattern = _alternation(self.phrases, whole_words=True)

    def chinese(self, run: str) -> str:
        if self._zh_pattern is None:
            return run
        return self._zh_pattern.sub(lambda match: self.zh[match.group(0)], run)

    def english_phrases(self, text: str) -> str:
        """``text`` (normalised, contractions expanded) with every phrase replaced."""
        if self._phrase_pattern is None:
            return text
        return self._phrase_pattern.sub(lambda match: self.phrases[match.group(1)], text)


def _alternation(keys: Iterable[str], *, whole_words: bool = False) -> re.Pattern[str] | None:
    """One pattern for all ``keys``, longest first (Chinese: anywhere; English: whole words)."""
    ordered = sorted(keys, key=len, reverse=True)
    if not ordered:
        return None
    pattern = "|".join(map(re.escape, ordered))
    if whole_words:
        return re.compile(f"(?:(?<= )|^)({pattern})(?= |$)")
    return re.compile(pattern)


def expand_contractions(text: str) -> str:
    """ "cant" -> "can not", "whats" -> "what" ... word by word (apostrophes already removed)."""
    return " ".join(EN_CONTRACTIONS.get(word, word) for word in text.split(" "))


def _english_words(token: str) -> list[str]:
    return [word for word in token.split() if word not in EN_STOP_WORDS]


def clauses(text: str) -> list[str]:
    """The parts of a long message, cut at punctuation, at line ends and at the spaces customers
    put between Chinese phrases: a story, then the question, is scored part by part too."""
    folded = unicodedata.normalize("NFKC", text)
    parts = [part for part in _CLAUSE_BREAK.split(folded) if part and part.strip()]
    if len(parts) > MAX_CLAUSES:
        parts = parts[:2] + parts[-(MAX_CLAUSES - 2) :]
    return parts


_CLAUSE_BREAK = re.compile(
    f"[。！？!?；;，,.…\\n、~～:：()（）]+|(?<=[{_CJK_CHARS}])\\s+|\\s+(?=[{_CJK_CHARS}])"
    "|\\b(?:but|however|because|although)\\b|但是|可是|不过|因为"
)


@dataclass
class _Unit:
    """One scored part of a message (the whole of it, a clause, or one script's words)."""

    text: str
    features: frozenset[str]
    weight_scale: float


class KbIndex:
    """Every question (both languages in one feature space) and every entry's whole vocabulary
    (its questions in both languages and its keywords), weighted once; ``match`` per text.

    Immutable after ``build``: a reload builds a new index and swaps it in.
    """

    def __init__(self, thresholds: Thresholds, synonyms: _Synonyms) -> None:
        self.thresholds = thresholds
        self._synonyms = synonyms
        self.entry_ids: list[str] = []
        self.entry_of: list[int] = []
        self.texts: list[str] = []
        self.features_of: list[frozenset[str]] = []
        self.weight_of: list[float] = []
        self.postings: dict[str, list[int]] = {}
        self.entry_features: list[set[str]] = []
        self.entry_weight: list[float] = []
        self.entry_postings: dict[str, list[int]] = {}
        self.idf: dict[str, float] = {}
        self.unknown_weight = 1.0
        self._vocabulary: frozenset[str] = frozenset()
        self._by_initial: dict[str, list[str]] = {}
        self._corrections: dict[str, str] = {}

    @classmethod
    def build(
        cls,
        entries: Iterable[tuple[str, Mapping[str, Sequence[str]]]],
        *,
        synonyms: Mapping[str, Sequence[Sequence[str]]] | None = None,
        thresholds: Thresholds | None = None,
        keywords: Mapping[str, Sequence[str]] | None = None,
    ) -> KbIndex:
        """``entries``: (id, {language: [questions]}); ``keywords``: id -> words or phrases
        that point to the entry (in any language), matched like short questions."""
        index = cls(thresholds or Thresholds(), _Synonyms(synonyms or {}))
        vocabulary: set[str] = set()
        for entry_id, questions in entries:
            entry = len(index.entry_ids)
            index.entry_ids.append(entry_id)
            index.entry_features.append(set())
            own_keywords = (keywords or {}).get(entry_id, ())
            for question in [*(q for qs in questions.values() for q in qs), *own_keywords]:
                text = index._prepare(question)
                features = index._features(text, vocabulary)
                if not features:
                    continue
                index.entry_of.append(entry)
                index.texts.append(text)
                index.features_of.append(features)
                index.entry_features[entry].update(features)
        index._finish(vocabulary)
        return index

    def _finish(self, vocabulary: set[str]) -> None:
        for paraphrase, features in enumerate(self.features_of):
            for feature in features:
                self.postings.setdefault(feature, []).append(paraphrase)
        for entry, vocabulary_features in enumerate(self.entry_features):
            for feature in vocabulary_features:
                self.entry_postings.setdefault(feature, []).append(entry)
        count = max(len(self.entry_ids), 1)
        self.idf = {
            feature: math.log(1 + count / len(entries))
            for feature, entries in self.entry_postings.items()
        }
        self.unknown_weight = math.log(1 + count)
        self.weight_of = [sum(self.idf[f] for f in features) for features in self.features_of]
        self.entry_weight = [sum(self.idf[f] for f in fs) for fs in self.entry_features]
        self._vocabulary = frozenset(vocabulary)
        for word in sorted(vocabulary):
            self._by_initial.setdefault(word[0], []).append(word)

    def __len__(self) -> int:
        return len(self.entry_ids)

    def _prepare(self, text: str) -> str:
        return self._synonyms.english_phrases(expand_contractions(normalise(text)))

    def correct(self, word: str) -> str:
        """The knowledge base's own word nearest to a misspelt one (or the word itself)."""
        if len(word) < SPELLING_MIN_LENGTH or not word.isalpha() or word in self._vocabulary:
            return word
        cached = self._corrections.get(word)
        if cached is None:
            # Only words with the same first letter: typos rarely hit it, and it keeps the
            # search to a few hundred words in a large knowledge base.
            # Damerau-Levenshtein (OSA) distance: 1 edit for short words, 2 from 8 letters
            # ("retrun", "recieved"), so a real word is not bent into another ("taking").
            found = process.extractOne(
                word,
                self._by_initial.get(word[0], ()),
                scorer=OSA.distance,
                score_cutoff=1 if len(word) < 8 else 2,
            )
            cached = found[0] if found else word
            if len(self._corrections) > 10_000:
                self._corrections.clear()
            self._corrections[word] = cached
        return cached

    def _features(self, text: str, vocabulary: set[str] | None = None) -> frozenset[str]:
        """Chinese characters and pairs, English words (corrected, stemmed, synonyms mapped).
        With ``vocabulary`` (at build time) English words are collected, not corrected."""
        features: set[str] = set()
        for token in _TOKEN.findall(text):
            if has_cjk(token):
                run = _ZH_FILLER.sub("", self._synonyms.chinese(token))
                features.update(run)
                features.update(run[i : i + 2] for i in range(len(run) - 1))
                continue
            for word in _english_words(token):
                if vocabulary is not None:
                    vocabulary.add(word)
                else:
                    word = self.correct(word)
                stemmed = stem(word)
                features.add(self._synonyms.en.get(stemmed, stemmed))
        return frozenset(features)

    def _units(self, text: str) -> list[_Unit]:
        """The whole text, then (for a long or mixed message) its clauses and each script's
        words on their own; a part weighing little counts less."""
        whole = self._prepare(text)
        units = [_Unit(whole, self._features(whole), 1.0)]
        prepared = [self._prepare(part) for part in clauses(text)]
        pieces = prepared if len(prepared) > 1 else []
        if has_cjk(whole) and _LATIN.search(whole):
            tokens = _TOKEN.findall(whole)
            pieces += [" ".join(t for t in tokens if has_cjk(t) == cjk) for cjk in (True, False)]
        seen = {whole}
        for piece in pieces:
            if piece and piece not in seen:
                seen.add(piece)
                features = self._features(piece)
                weight = sum(self._weights(features).values())
                scale = CLAUSE_FACTOR * min(1.0, weight / SHORT_PART_WEIGHT)
                units.append(_Unit(piece, features, scale))
        return units

    def _rare(self, weights: Mapping[str, float], postings: Mapping[str, list[int]]) -> list[str]:
        """The question's rarest known features, within a budget of postings: a common character
        or word would make this a scan of the whole knowledge base and tells little."""
        known = sorted((f for f in weights if f in postings), key=lambda f: len(postings[f]))
        rare: list[str] = []
        budget = POSTINGS_BUDGET
        for feature in known:
            if rare and len(postings[feature]) > budget:
                break
            rare.append(feature)
            budget -= len(postings[feature])
        return rare

    def _candidates(
        self, weights: Mapping[str, float], postings: Mapping[str, list[int]], limit: int
    ) -> list[int]:
        votes: dict[int, float] = {}
        get = votes.get
        for feature in self._rare(weights, postings):
            weight = weights[feature]
            for item in postings[feature]:
                votes[item] = get(item, 0.0) + weight
        if len(votes) > limit:
            return heapq.nlargest(limit, votes, key=votes.__getitem__)
        return list(votes)

    def _weights(self, features: frozenset[str]) -> dict[str, float]:
        idf, unknown = self.idf, self.unknown_weight
        return {feature: idf.get(feature, unknown) for feature in features}

    def _scores(self, features: frozenset[str]) -> dict[int, tuple[float, int]]:
        """Scores 0-1 per candidate entry, with the entry's best question (or -1)."""
        weights = self._weights(features)
        question = sum(weights.values())
        scores: dict[int, tuple[float, int]] = {}
        if not question:
            return scores
        a, b = TVERSKY_QUESTION, TVERSKY_ENTRY
        for paraphrase in self._candidates(weights, self.postings, CANDIDATES):
            shared = sum(weights[f] for f in features & self.features_of[paraphrase])
            score = shared / (
                shared + a * (question - shared) + b * (self.weight_of[paraphrase] - shared)
            )
            entry = self.entry_of[paraphrase]
            if score > scores.get(entry, (-1.0, 0))[0]:
                scores[entry] = (score, paraphrase)
        d = TVERSKY_VOCABULARY
        for entry in self._candidates(weights, self.entry_postings, ENTRY_CANDIDATES):
            shared = sum(weights[f] for f in features & self.entry_features[entry])
            coverage = shared / (
                shared + a * (question - shared) + d * (self.entry_weight[entry] - shared)
            )
            previous, paraphrase = scores.get(entry, (0.0, -1))
            scores[entry] = (_combine(previous, coverage), paraphrase)
        return scores

    def _mixed_scores(self, text: str) -> dict[int, tuple[float, int]]:
        """Chinese and English in one text: each script's part is compared with the questions
        of its own language, and an entry's score is the parts' scores weighted by their IDF."""
        parts = [
            " ".join(t for t in _TOKEN.findall(text) if has_cjk(t) == chinese)
            for chinese in (True, False)
        ]
        combined: dict[int, tuple[float, int]] = {}
        features = [self._features(part) for part in parts]
        weights = [sum(self._weights(f).values()) for f in features]
        total = sum(weights)
        if not total:
            return combined
        for part_features, weight in zip(features, weights, strict=True):
            for entry, (score, paraphrase) in self._scores(part_features).items():
                previous, best_paraphrase = combined.get(entry, (0.0, paraphrase))
                combined[entry] = (previous + score * weight / total, best_paraphrase)
        return combined

    def _score_unit(self, unit: _Unit, best: dict[int, tuple[float, str, int]]) -> None:
        """Scores one unit and keeps each entry's best score so far in ``best``."""
        scores = self._scores(unit.features)
        if has_cjk(unit.text) and _LATIN.search(unit.text):
            for entry, (score, paraphrase) in self._mixed_scores(unit.text).items():
                if score > scores.get(entry, (-1.0, -1))[0]:
                    scores[entry] = (score, paraphrase)
        for entry, (score, paraphrase) in scores.items():
            scaled = score * unit.weight_scale
            if scaled > best.get(entry, (-1.0, "", -1))[0]:
                best[entry] = (scaled, unit.text, paraphrase)

    def match(self, text: str, limit: int = 3) -> MatchResult:
        """The best ``limit`` entries for a customer's text and what to do with them."""
        normalised = normalise(text)
        if not self.texts:
            return MatchResult(Band.NONE, (), normalised)
        best: dict[int, tuple[float, str, int]] = {}
        for unit in self._units(text):
            if unit.features:
                self._score_unit(unit, best)
        ranked = sorted(best.items(), key=lambda item: item[1][0], reverse=True)[: limit + 2]
        matches = sorted(
            (
                Match(self.entry_ids[entry], self._final(score, unit_text, paraphrase))
                for entry, (score, unit_text, paraphrase) in ranked
            ),
            key=lambda match: match.score,
            reverse=True,
        )[:limit]
        return MatchResult(self._band(matches), tuple(matches), normalised)

    def _final(self, score: float, unit_text: str, paraphrase: int) -> float:
        ratio = fuzz.ratio(unit_text, self.texts[paraphrase]) if paraphrase >= 0 else 0.0
        return round((1 - RATIO_SHARE) * 100 * score + RATIO_SHARE * ratio, 1)

    def _band(self, matches: Sequence[Match]) -> Band:
        if not matches or matches[0].score < self.thresholds.suggest:
            return Band.NONE
        top = matches[0].score
        runner_up = matches[1].score if len(matches) > 1 else 0.0
        if top >= self.thresholds.answer and top - runner_up >= self.thresholds.margin:
            return Band.ANSWER
        return Band.SUGGEST


def _combine(paraphrase: float, vocabulary: float) -> float:
    """An entry's score from its best question and from its whole vocabulary."""
    return max(paraphrase, VOCABULARY_SHARE * vocabulary + (1 - VOCABULARY_SHARE) * paraphrase)
