"""Texts by topic, for the drift benchmark (bench_drift.py) and the drift tests: sentences put together from
each topic's own words, seeded, so that a window of traffic can be drawn from a known mix of topics and a
shift of a known size made. The embeddings of them are the bundled model's, real; only the texts are made up.
"""

from __future__ import annotations

import random

TOPICS: dict[str, dict[str, list[str]]] = {
    "billing": {
        "subject": [
            "my invoice",
            "the last payment",
            "a refund",
            "the monthly charge",
            "my credit card",
            "the receipt",
        ],
        "verb": ["was charged twice for", "does not show", "is missing from", "was declined for", "still lists"],
        "object": ["the annual plan", "last month's subscription", "the upgrade", "my account", "the team seats"],
        "tail": ["please fix it", "since Tuesday", "after the price change", "and I need a copy", "for the third time"],
    },
    "shipping": {
        "subject": ["my parcel", "the delivery", "the courier", "the tracking number", "the package", "my order"],
        "verb": ["has not arrived at", "was left outside", "shows no update for", "was sent to", "got stuck at"],
        "object": ["the wrong address", "the depot", "my neighbour's house", "the customs office", "the warehouse"],
        "tail": [
            "two weeks ago",
            "without a signature",
            "in the rain",
            "despite express shipping",
            "yesterday evening",
        ],
    },
    "cooking": {
        "subject": ["the sourdough", "a tomato sauce", "the roast chicken", "my risotto", "the pastry", "a curry"],
        "verb": ["needs more", "turned out without", "tastes better with", "burns without", "calls for"],
        "object": ["fresh basil", "a pinch of salt", "slow simmering", "brown butter", "toasted cumin seeds"],
        "tail": ["on a cold evening", "for six people", "in a cast iron pan", "before serving", "at low heat"],
    },
    "football": {
        "subject": ["the striker", "our goalkeeper", "the home team", "the coach", "the referee", "the midfielder"],
        "verb": ["scored against", "was sent off against", "celebrated with", "argued with", "defended against"],
        "object": ["the league leaders", "the away fans", "a penalty", "the rival club", "the captain"],
        "tail": ["in extra time", "after a corner kick", "in the derby", "before half time", "in the cup final"],
    },
    "medicine": {
        "subject": ["the patient", "my doctor", "the nurse", "a blood test", "the prescription", "the surgeon"],
        "verb": ["recommended", "found signs of", "ruled out", "adjusted the dose of", "scheduled"],
        "object": ["an antibiotic", "high blood pressure", "a follow-up scan", "the insulin", "physiotherapy"],
        "tail": ["after the checkup", "for the next month", "twice a day", "before the operation", "as a precaution"],
    },
    "astronomy": {
        "subject": ["the telescope", "a comet", "the rover", "the observatory", "a distant galaxy", "the probe"],
        "verb": ["captured images of", "passed close to", "measured light from", "orbits around", "detected"],
        "object": ["a red dwarf star", "the rings of Saturn", "an exoplanet", "a supernova remnant", "the moon"],
        "tail": ["last night", "for the first time", "through thin clouds", "millions of years ago", "at dawn"],
    },
    "gardening": {
        "subject": ["the roses", "my tomato plants", "the lawn", "a young apple tree", "the hedge", "the seedlings"],
        "verb": ["need pruning after", "wilted during", "grow well beside", "were eaten by", "thrive with"],
        "object": ["the frost", "compost and mulch", "slugs", "the marigolds", "morning sun"],
        "tail": ["in early spring", "every autumn", "in clay soil", "near the fence", "this summer"],
    },
    "programming": {
        "subject": ["the build", "this function", "the unit test", "my query", "the deployment", "the compiler"],
        "verb": ["fails on", "returns null for", "times out on", "leaks memory in", "crashes with"],
        "object": ["an empty list", "the new branch", "large inputs", "the staging server", "a race condition"],
        "tail": ["after the upgrade", "only on Windows", "since the last merge", "under load", "in production"],
    },
}


def sentences(topic: str, n: int, seed: int) -> list[str]:
    """`n` sentences of `topic`, reproducible from `seed`."""
    words = TOPICS[topic]
    rng = random.Random(f"{topic}:{seed}")
    out = []
    for _ in range(n):
        subject, verb, obj, tail = (rng.choice(words[k]) for k in ("subject", "verb", "object", "tail"))
        text = f"{subject} {verb} {obj} {tail}"
        if rng.random() < 0.3:
            text = f"{text}, {rng.choice(words['tail'])}"
        out.append(text[0].upper() + text[1:] + rng.choice([".", ".", "!", "?"]))
    return out


def mix(weights: dict[str, float], n: int, seed: int) -> list[str]:
    """`n` texts drawn from topics in proportion to `weights`, shuffled (reproducible from `seed`)."""
    rng = random.Random(seed)
    names = sorted(weights)
    chosen = rng.choices(names, weights=[weights[t] for t in names], k=n)
    pools = {t: iter(sentences(t, chosen.count(t), rng.randrange(1 << 30))) for t in names}
    return [next(pools[t]) for t in chosen]
