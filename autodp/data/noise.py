"""Inject known noise into clean rows, to test that an evaluator rewards cleaning.

The noise kinds mirror what the paper's operators remove: markup, truncated answers, answers
swapped between rows, and duplicated rows. The RNG is seeded apart from any training seed
(one seed for both makes the corrupted rows exactly the ones a shuffle puts last).
"""
from __future__ import annotations

import random

from autodp.data.io import Row

KINDS = ("html", "truncate", "swap", "duplicate")
_HTML = ("<div class=\"answer\"><p>{}</p></div>&nbsp;&nbsp;<br/>"
         "<a href=\"http://www.example-hospital.com/zx?id=3\">点击咨询&gt;&gt;</a>")


def inject_noise(rows: list[Row], fraction: float, seed: int, kinds: tuple[str, ...] = KINDS) -> list[Row]:
    """Corrupt ``fraction`` of the rows, cycling through ``kinds``; row count is unchanged."""
    rng = random.Random(f"noise-{seed}")
    out = [dict(r) for r in rows]
    picked = rng.sample(range(len(rows)), round(fraction * len(rows)))
    for n, i in enumerate(picked):
        kind, r = kinds[n % len(kinds)], out[i]
        other = rows[rng.randrange(len(rows))]
        if kind == "html":
            r["output"] = _HTML.format(r["output"].replace("，", "，<br>", 2))
        elif kind == "truncate":
            r["output"] = r["output"][: max(1, int(len(r["output"]) * 0.3))]
        elif kind == "swap":
            r["output"] = other["output"]
        elif kind == "duplicate":
            out[i] = {**other, "id": r["id"]}
        else:
            raise ValueError(f"unknown noise kind {kind!r}; known: {KINDS}")
    return out
