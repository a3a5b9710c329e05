"""Knowledge-base matching benchmark (a script, not a test).

    python bench/kb.py [--entries 10000] [--queries 1000] [--seed 7]

Builds the shipped example knowledge base plus ``--entries`` synthetic entries (each one
question in Chinese and one in English: words and characters drawn with a Zipf distribution, so
common ones are common, as in real questions), then matches ``--queries`` perturbed questions
(English: a typo — a letter dropped, doubled, swapped or replaced — a filler word, upper case;
Chinese: a character dropped or swapped, a particle added, traditional characters). It prints
p50/p99 latency of one match (wall clock, and this thread's CPU time, which other processes on a
shared machine do not inflate) and top-1 accuracy, for carebot's matcher, for rapidfuzz's
``fuzz.ratio`` and ``WRatio`` over the same normalised questions (``process.extractOne``), and for
``difflib.get_close_matches`` as the baseline (on the first ``--difflib-queries``: it takes about
a second per query).

It also times the questions of the labelled sets (long messages included) against the same
10,000-entry index. Then it scores the three labelled sets against the shipped knowledge base:
top-1 (zh / en), confidently wrong and off-topic handling (``handlers.answers.quality``) for
``kb_questions.yaml`` (the first, regression set), ``kb_dev.yaml`` (the set the matcher was
tuned on) and ``kb_heldout.yaml`` (never tuned on), and the first set with rapidfuzz's scorers
alone: the measurement behind carebot's choice of scorer.
"""

from __future__ import annotations

import argparse
import difflib
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rapidfuzz import fuzz, process

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.settings import EXAMPLE_CONFIG_DIR  # noqa: E402
from handlers.answers.kb import load_knowledge_base  # noqa: E402
from handlers.answers.matching import KbIndex, has_cjk, normalise  # noqa: E402
from handlers.answers.quality import evaluate, load_labelled  # noqa: E402

DATA = ROOT / "tests" / "data"
LABELLED = DATA / "kb_questions.yaml"
SETS = {
    "regression (kb_questions)": DATA / "kb_questions.yaml",
    "dev (kb_dev, tuned on)": DATA / "kb_dev.yaml",
    "held-out (kb_heldout)": DATA / "kb_heldout.yaml",
}
COMMON_HANZI = (
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能"
    "对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前"
    "面又定见只主没公从知三问长把机意很它物全名如高外两手种部商品订单退货款运费快递包裹发票优惠券会"
    "员积分地址取消修改换尺码颜色支付微信宝卡银行客服电话时间营业保修质量破损错少件价格降差补库存正"
    "品假真礼包装贺生日隐私删除账号注销消息关注店铺新人首折扣码无效过期满减到账原路返回申请流程审核"
    "仓库检查寄回单号物流查询更新签收丢失超时国际海外香港台湾澳门门店自提合并颜色规格夏季冬季衣服鞋"
)
EN_WORDS = [
    "order",
    "parcel",
    "package",
    "delivery",
    "shipping",
    "return",
    "refund",
    "exchange",
    "invoice",
    "payment",
    "card",
    "coupon",
    "code",
    "member",
    "points",
    "birthday",
    "address",
    "phone",
    "email",
    "store",
    "hours",
    "price",
    "discount",
    "size",
    "colour",
    "warranty",
    "repair",
    "broken",
    "damaged",
    "missing",
    "wrong",
    "item",
    "product",
    "account",
    "data",
    "message",
    "gift",
    "wrap",
    "track",
    "status",
    "late",
    "lost",
    "cancel",
    "change",
    "update",
    "express",
    "international",
    "customs",
    "fee",
    "cost",
    "free",
    "pickup",
    "stock",
    "restock",
    "genuine",
    "fake",
    "complaint",
    "service",
    "weekend",
    "night",
    "holiday",
    "receipt",
    "company",
    "shoes",
    "shirt",
    "jacket",
    "phone",
    "charger",
    "cable",
    "laptop",
    "bottle",
    "glass",
    "box",
    "label",
    "sticker",
    "voucher",
    "level",
    "upgrade",
    "benefit",
    "expire",
    "redeem",
    "earn",
    "balance",
    "wallet",
    "transfer",
    "bank",
    "alipay",
    "wechat",
    "visa",
    "credit",
]
ZH_PARTICLES = ("吗", "呢", "啊", "请问", "你好")
EN_FILLERS = ("please", "hi", "hey", "thanks", "pls")


def _zipf_choices(rng: random.Random, pool: list[str], k: int) -> list[str]:
    weights = [1 / (rank + 1) for rank in range(len(pool))]
    return rng.choices(pool, weights=weights, k=k)


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    words = set(EN_WORDS)
    while len(words) < count:
        words.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


def synthetic_entries(count: int, rng: random.Random) -> list[tuple[str, dict[str, list[str]]]]:
    hanzi = list(dict.fromkeys(COMMON_HANZI))
    words = _pseudo_words(rng, 6000)
    entries = []
    for number in range(count):
        zh = "".join(_zipf_choices(rng, hanzi, rng.randint(6, 14)))
        en = " ".join(_zipf_choices(rng, words, rng.randint(4, 9)))
        entries.append((f"synthetic-{number}", {"zh": [zh], "en": [en]}))
    return entries


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("drop", "double", "swap", "replace"))
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap":
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]


def perturb(question: str, rng: random.Random, to_traditional: Callable[[str], str]) -> str:
    if has_cjk(question):
        chars = list(question)
        if len(chars) > 4 and rng.random() < 0.5:
            del chars[rng.randrange(len(chars))]
        elif len(chars) > 3:
            i = rng.randrange(len(chars) - 1)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        text = "".join(chars) + rng.choice(ZH_PARTICLES)
        return to_traditional(text) if rng.random() < 0.5 else text
    words = question.split()
    i = rng.randrange(len(words))
    words[i] = _typo(words[i], rng)
    if rng.random() < 0.5:
        words.insert(0, rng.choice(EN_FILLERS))
    text = " ".join(words) + rng.choice(("", "?", "!!"))
    return text.upper() if rng.random() < 0.2 else text


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def timed(
    name: str, queries: list[tuple[str, str]], match: Callable[[str], str | None]
) -> tuple[float, float, float]:
    latencies, cpu, right = [], [], 0
    for text, expected in queries:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        found = match(text)
        cpu.append((time.thread_time_ns() - start_cpu) / 1e6)
        latencies.append((time.perf_counter_ns() - start) / 1e6)
        right += found == expected
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    accuracy = right / len(queries)
    print(
        f"  {name:<34} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   "
        f"(CPU p50 {statistics.median(cpu):7.3f}, p99 {percentile(cpu, 0.99):7.3f})   "
        f"top-1 {accuracy:6.1%}"
    )
    return p50, p99, accuracy


def flat_matcher(
    entries: list[tuple[str, dict[str, list[str]]]], scorer: Callable[..., float]
) -> Callable[[str], str | None]:
    """rapidfuzz over every normalised question of the query's script (the usual approach)."""
    sides: dict[bool, tuple[list[str], list[str]]] = {True: ([], []), False: ([], [])}
    for entry_id, questions in entries:
        for question in (q for qs in questions.values() for q in qs):
            text = normalise(question)
            side = sides[has_cjk(text)]
            side[0].append(text)
            side[1].append(entry_id)

    def match(query: str) -> str | None:
        text = normalise(query)
        choices, ids = sides[has_cjk(text)]
        found = process.extractOne(text, choices, scorer=scorer)
        return ids[found[2]] if found else None

    return match


def difflib_matcher(
    entries: list[tuple[str, dict[str, list[str]]]],
) -> Callable[[str], str | None]:
    texts, ids = [], []
    for entry_id, questions in entries:
        for question in (q for qs in questions.values() for q in qs):
            texts.append(normalise(question))
            ids.append(entry_id)
    position = {text: i for i, text in enumerate(texts)}

    def match(query: str) -> str | None:
        found = difflib.get_close_matches(normalise(query), texts, n=1, cutoff=0.0)
        return ids[position[found[0]]] if found else None

    return match


def labelled_sets(entries: list[tuple[str, dict[str, list[str]]]], index: KbIndex) -> None:
    """Quality on the three labelled sets, then rapidfuzz's scorers alone on the first."""
    print(f"\nLabelled sets against the shipped knowledge base (thresholds {index.thresholds}):")
    for name, path in SETS.items():
        print(f"  {name:<27} {evaluate(index, load_labelled(path)).summary()}")
    answerable = [(q, e) for q, e in load_labelled(LABELLED) if e != "none"]
    print(f"\nBest entry alone on the regression set ({len(answerable)} with an answer):")
    scorers: dict[str, Callable[[str], str | None]] = {
        "fuzz.ratio": flat_matcher(entries, fuzz.ratio),
        "fuzz.WRatio": flat_matcher(entries, fuzz.WRatio),
        "fuzz.token_set_ratio": flat_matcher(entries, fuzz.token_set_ratio),
        "fuzz.partial_ratio": flat_matcher(entries, fuzz.partial_ratio),
    }
    for name, match in scorers.items():
        right = sum(match(q) == expected for q, expected in answerable)
        print(f"  {name:<34} top-1 {right / len(answerable):6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--difflib-queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    import opencc

    to_traditional = opencc.OpenCC("s2t").convert
    shipped = load_knowledge_base(EXAMPLE_CONFIG_DIR)
    real = [(entry.id, entry.questions.as_mapping()) for entry in shipped.entries]
    entries = real + synthetic_entries(args.entries, rng)
    start = time.perf_counter()
    keywords = {entry.id: entry.keywords.all() for entry in shipped.entries}
    index = KbIndex.build(entries, synonyms=shipped.synonyms, keywords=keywords)
    build_seconds = time.perf_counter() - start

    queries = []
    for _ in range(args.queries):
        entry_id, questions = rng.choice(entries[len(real) :])
        language = rng.choice(("zh", "en"))
        queries.append((perturb(questions[language][0], rng, to_traditional), entry_id))
    print(
        f"{len(entries)} entries ({args.entries} synthetic + {len(real)} shipped), zh and en; "
        f"index built in {build_seconds:.2f} s; {len(queries)} perturbed queries "
        f"(half Chinese, half English); Python {sys.version.split()[0]}"
    )
    index.match("warm up")

    def carebot(text: str) -> str | None:
        best = index.match(text).best
        return best.entry_id if best else None

    timed("carebot matcher", queries, carebot)
    # The customers' own questions (long ones too), against the same 10,000-entry index.
    real_questions = [q for path in SETS.values() for q in load_labelled(path) if q[1] != "none"]
    timed(f"carebot, {len(real_questions)} labelled questions", real_questions, carebot)
    timed("rapidfuzz fuzz.ratio (extractOne)", queries, flat_matcher(entries, fuzz.ratio))
    timed("rapidfuzz fuzz.WRatio (extractOne)", queries, flat_matcher(entries, fuzz.WRatio))
    sample = queries[: args.difflib_queries]
    timed(f"difflib baseline ({len(sample)} queries)", sample, difflib_matcher(entries))

    labelled_sets(real, shipped.index)


if __name__ == "__main__":
    main()
