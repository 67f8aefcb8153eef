"""``python -m autodp.judge``: two models' answers to the same test questions, judged pairwise.

    python -m autodp.judge --questions test.jsonl --ours ours.jsonl --theirs none.jsonl \
        [--limit 100] [--names ours,none] [--out DIR] [hydra overrides, e.g. judge=openai judge.lang=en]

Questions: a dataset JSONL (instruction, input, output, id). Answers: JSONL lines
``{"id": ..., "answer": ...}``, one per question. The judge is ``judge`` of the composed config
(conf/judge: a local model, or any OpenAI-compatible server such as GPT-4's), greedy.
Writes judgments.jsonl (both verdicts per question), winrate.json and winrate.md into --out.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from autodp.data.io import DataError, atomic_write, load_rows
from autodp.errors import UserError
from autodp.judge.pairwise import judge_questions
from autodp.judge.winrate import table, win_rate
from autodp.llm.client import build_client
from autodp.resources import compose_config

log = logging.getLogger("autodp.judge")


def read_answers(path: Path) -> dict[str, str]:
    """id -> answer; a bad line names the file, the line and the field."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise DataError(path, None, None, f"{what}; a JSONL file of {{\"id\", \"answer\"}} lines is expected")
    answers: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, n, None, f"not JSON ({e.msg})") from None
        for field in ("id", "answer"):
            if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                raise DataError(path, n, field, "a string is expected")
        if obj["id"] in answers:
            raise DataError(path, n, "id", f"duplicate id {obj['id']!r}")
        answers[obj["id"]] = obj["answer"]
    return answers


def compose_judge(overrides: list[str]) -> DictConfig:
    return compose_config(overrides).judge


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m autodp.judge", description=__doc__.split("\n")[0])
    p.add_argument("--questions", type=Path, required=True)
    p.add_argument("--ours", type=Path, required=True)
    p.add_argument("--theirs", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("outputs/judge") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    p.add_argument("--limit", type=int, default=None, help="judge the first N questions")
    p.add_argument("--names", default="ours,theirs", help="the two arms' names in the table")
    p.add_argument("--seed", type=int, default=0)
    args, overrides = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        rows = load_rows(args.questions, limit=args.limit)
        ours, theirs = read_answers(args.ours), read_answers(args.theirs)
        for path, answers in ((args.ours, ours), (args.theirs, theirs)):
            missing = [r["id"] for r in rows if r["id"] not in answers]
            if missing:
                raise DataError(path, None, "id", f"no answer for {len(missing)} question(s), e.g. {missing[0]!r}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = compose_judge(overrides)
    client = build_client(cfg.client)
    judgments = judge_questions(client, rows, ours, theirs, cfg, seed=args.seed)
    w = win_rate(judgments, boot=cfg.boot, seed=args.seed)
    name_ours, _, name_theirs = args.names.partition(",")
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "judgments.jsonl") as f:
        f.writelines(json.dumps(j.as_dict(), ensure_ascii=False) + "\n" for j in judgments)
    with atomic_write(args.out / "winrate.json") as f:
        json.dump({"ours": name_ours, "theirs": name_theirs, "judge": client.model, **w.as_dict()}, f, indent=2)
    with atomic_write(args.out / "winrate.md") as f:
        f.write(md := table([(name_ours, name_theirs, w)]))
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
