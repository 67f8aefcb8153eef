"""Inject known noise into clean rows: to test that an evaluator rewards cleaning, to check F,
and to build ``dataset=cmd_noisy`` (``python -m autodp.data.noise``).

The kinds are those of the raw scrape (shared/data/README.md): markup and advertising, truncated
answers, answers swapped between rows or spliced into one another, exact and near duplicates,
template boilerplate (greetings, sign-offs) and doubled or ASCII punctuation. The RNG is seeded
apart from any training seed (one seed for both makes the corrupted rows exactly the ones a
shuffle puts last).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autodp.data.io import TEXT_FIELDS, Row, atomic_write, load_rows, write_rows

KINDS = ("html", "truncate", "swap", "duplicate")
_HTML = ("<div class=\"answer\"><p>{}</p></div>&nbsp;&nbsp;<br/>"
         "<a href=\"http://www.example-hospital.com/zx?id=3\">点击咨询&gt;&gt;</a>")
# Written like the real CMD templates and ads the screening rules look for.
_BOILERPLATE_TEXT = ("期望上述的答案可以协助到你，谢谢！", "患者的饮食状况和护理也是很关键的，要多加注意。",
                     "这种疾病不易纾解，需要长期坚持。")
_GREETING_TEXT = ("你好，", "您好！很高兴为您解答。", "你好！")
_ADVERTISING_TEXT = ("建议到我们医院专科门诊就诊，治愈率高。", "点击在线咨询专家，了解更多治疗方案。")

Variant = Callable[[Row, random.Random, list[Row]], Row]  # (row, rng, all rows) -> corrupted row


def _punctuation(row: Row, rng: random.Random, pool: list[Row]) -> Row:
    return {**row, "output": row["output"].replace("，", ",", 3).replace("。", "。。", 1)}


def _splice(row: Row, rng: random.Random, pool: list[Row]) -> Row:
    """First half of this answer, second half of another: the real CMD splices (one sentence
    running into another answer) end in proper punctuation, so no surface rule sees them."""
    a, b = row["output"], rng.choice(pool)["output"]
    return {**row, "output": a[: len(a) // 2] + b[len(b) // 2:]}


def _near_duplicate(row: Row, rng: random.Random, pool: list[Row]) -> Row:
    """Another row reposted with small edits (its question's final mark changed, a character of
    its answer dropped, a comma made ASCII): what exact-match dedup misses."""
    other = rng.choice([r for r in pool if r["id"] != row["id"]])
    q, a = other["instruction"], other["output"]
    q = q[:-1] if q[-1:] in ("？", "?", "。") else q + "？"
    i = rng.randrange(len(a))
    return {**other, "id": row["id"], "instruction": q, "output": (a[:i] + a[i + 1:]).replace("，", ",", 1)}


VARIANTS: dict[str, Variant] = {
    "splice": _splice,
    "boilerplate": lambda r, rng, pool: {**r, "output": r["output"] + rng.choice(_BOILERPLATE_TEXT)},
    "greeting": lambda r, rng, pool: {**r, "output": rng.choice(_GREETING_TEXT) + r["output"]},
    "advertising": lambda r, rng, pool: {**r, "output": r["output"] + rng.choice(_ADVERTISING_TEXT)},
    "punctuation": _punctuation,
    "near_duplicate": _near_duplicate,
}
ALL_KINDS = KINDS + tuple(VARIANTS)


def inject_labelled(rows: list[Row], fraction: float, seed: int,
                    kinds: tuple[str, ...] = KINDS) -> tuple[list[Row], list[str | None]]:
    """Corrupt ``fraction`` of the rows, cycling through ``kinds``; row count is unchanged.
    Returns the rows and each row's kind (None where the text did not change, e.g. an answer
    swapped with itself)."""
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown:
        raise ValueError(f"unknown noise kinds {sorted(unknown)}; known: {ALL_KINDS}")
    rng = random.Random(f"noise-{seed}")
    out = [dict(r) for r in rows]
    kind_of: list[str | None] = [None] * len(rows)
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
            out[i] = VARIANTS[kind](r, rng, rows)
        if any(out[i][f] != rows[i][f] for f in TEXT_FIELDS):
            kind_of[i] = kind
    return out, kind_of


def inject_noise(rows: list[Row], fraction: float, seed: int, kinds: tuple[str, ...] = KINDS) -> list[Row]:
    """``inject_labelled`` without the labels."""
    return inject_labelled(rows, fraction, seed, kinds)[0]


def noisy_dataset(dataset: Any) -> tuple[list[Row], list[dict[str, str]]]:
    """A dataset config's ``noise`` block (e.g. conf/dataset/cmd_noisy.yaml) made real: the
    first ``rows`` rows of ``source`` with noise injected, and the manifest of what went where."""
    from autodp.resources import resolve_path

    noise = dataset["noise"]
    clean = load_rows(resolve_path(noise["source"]), noise["rows"])
    rows, kind_of = inject_labelled(clean, noise["fraction"], noise["seed"], tuple(noise["kinds"]))
    # meta keeps the source's title and row number, which would tell a copied or edited row
    # from the rest; only the manifest may say which rows are noisy.
    rows = [{**r, "meta": {"dataset": dataset["name"]}} for r in rows]
    manifest = [{"id": r["id"], "kind": k} for r, k in zip(rows, kind_of) if k is not None]
    return rows, manifest


def write_noisy_dataset(dataset: Any, out_dir: Path) -> None:
    rows, manifest = noisy_dataset(dataset)
    write_rows(out_dir / "train.jsonl", rows)
    with atomic_write(out_dir / "manifest.jsonl") as f:
        f.writelines(json.dumps(m, ensure_ascii=False) + "\n" for m in manifest)


def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from autodp.resources import PROJECT_ROOT, resolve_path

    p = argparse.ArgumentParser(prog="python -m autodp.data.noise",
                                description="Write a noisy dataset (train.jsonl, manifest.jsonl) from its config's noise block.")
    p.add_argument("--config", default=str(PROJECT_ROOT / "conf" / "dataset" / "cmd_noisy.yaml"))
    p.add_argument("--out", help="folder to write; default: the folder of the config's train file")
    args = p.parse_args(argv)
    cfg = OmegaConf.load(args.config)
    out = Path(args.out) if args.out else resolve_path(cfg.train).parent
    write_noisy_dataset(cfg, out)
    print(f"wrote {out / 'train.jsonl'} and {out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
