"""``python launch.py task=compare "compare.arms=['ours=<run dir>',none,...]"``: the first arm against
each other one, on the first ``compare.questions`` rows of the dataset's held-out test split.

Writes into the run dir: ``arms/<name>/answers.jsonl``, ``judgments/<ours>_vs_<theirs>.jsonl``,
``compare.json`` and ``compare.{md,csv,png}``: per arm the test answer NLL and ROUGE-L / BLEU
over characters against the gold answers (mean ± SE over questions); per pair Our Wins / Ties /
Our Losses with a bootstrap 95% interval, the judge's position consistency, the paired ROUGE-L
difference, and how often the judge and ROUGE-L agree on the better answer. Logs carry counts and
timings only; answers and judgments stay in the run dir.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from autodp.cluster import build_executor
from autodp.compare.arms import Arm, resolve_arm
from autodp.compare.job import ArmRequest, run_arm
from autodp.config_checks import ConfigError, check_config
from autodp.data.io import atomic_write, fingerprint, load_spec, write_rows
from autodp.data.specs import data_specs, heldout_test_spec
from autodp.evaluate.request import EvalRequest
from autodp.judge.pairwise import Judgment, judge_questions
from autodp.judge.winrate import WinRate, table, win_rate
from autodp.llm.client import build_client
from autodp.metrics import METRICS
from autodp.resources import cache_dir
from autodp.store import RunStore
from autodp.tracking.sweep_table import grouped_bars, mean_se, write_files

log = logging.getLogger(__name__)
REFERENCE = ("rouge_l_char", "bleu_char")


def agreement(judgments: Sequence[Judgment], ours: Sequence[float], theirs: Sequence[float]) -> tuple[float, int]:
    """Share of questions where the judge and ROUGE-L name the same better answer, over those
    where both name one (judge: win or loss; ROUGE-L: a difference); and how many those are."""
    both = [(j.outcome == "win") == (a > b) for j, a, b in zip(judgments, ours, theirs)
            if j.outcome in ("win", "loss") and a != b]
    return (sum(both) / len(both) if both else float("nan")), len(both)


def _arms(cfg: DictConfig, run_dir: Path) -> tuple[list[Arm], EvalRequest, Any]:
    specs = data_specs(cfg, run_dir / "splits")
    template = EvalRequest.from_config(cfg, *specs, out_dir=str(run_dir / "datasets"))
    arms = [resolve_arm(str(spec), template, run_dir / "arms") for spec in cfg.compare.arms]
    names = [a.name for a in arms]
    if len(set(names)) < len(names):
        raise ConfigError(f"compare.arms: two arms are named alike ({names}); name them as 'NAME=SPEC' (quoted for Hydra)")
    return arms, template, specs


def _requests(cfg: DictConfig, arms: Sequence[Arm], template: EvalRequest, pool: dict[str, Any],
              questions: dict[str, Any], run_dir: Path) -> list[ArmRequest]:
    """One job per arm; each reads its rows from ``arms/<name>/train.jsonl`` in the run dir."""
    ft, reference_rows = OmegaConf.to_container(cfg.finetune, resolve=True), len(load_spec(template.train))
    reqs = []
    for arm in arms:
        data = run_dir / "arms" / arm.name / "train.jsonl"
        write_rows(data, arm.rows)
        reqs.append(ArmRequest(strategy=arm.name, data=str(data), rows=fingerprint(arm.rows), finetune=ft,
                               seed=cfg.seed, pool=pool, reference_rows=reference_rows, questions=questions,
                               generation=dict(cfg.compare.generation), batch_size=cfg.eval.batch_size,
                               models=str(cache_dir("compare"))))
    return reqs


def run_compare(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    check_config(cfg)
    c = cfg.compare
    if len(c.arms) < 2:
        raise ConfigError("task=compare needs compare.arms with two arms at least, e.g. "
                          "compare.arms=['ours=outputs/<run dir>',none] (the first is compared with each other)")
    test = heldout_test_spec(cfg, run_dir / "splits")
    if test is None:
        raise ConfigError(f"dataset={cfg.dataset.name} has no test split (dataset.test or dataset.test_rows)")
    OmegaConf.save(cfg, run_dir / "config.yaml")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    arms, template, specs = _arms(cfg, run_dir)
    reqs = _requests(cfg, arms, template, specs.pool, {**test, "limit": c.questions}, run_dir)
    questions = load_spec(reqs[0].questions)
    timings["data"] = time.perf_counter() - t0
    gold = [q["output"] for q in questions]
    per_arm: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, str]] = {}
    # Each arm is a job of the cluster executor (conf/cluster): on SLURM a GPU job, in any order.
    for res in build_executor(cfg.cluster, RunStore(run_dir)).map(run_arm, reqs, desc="arms"):
        arm_dir = run_dir / "arms" / res.strategy
        if res.status != "ok":
            with atomic_write(arm_dir / "error.txt") as f:
                f.write(res.traceback or "")
            raise RuntimeError(f"arm {res.strategy} failed: {res.error} (traceback in {arm_dir / 'error.txt'})")
        for stage, seconds in res.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        answers[res.strategy] = {q["id"]: a for q, a in zip(questions, res.answers)}
        with atomic_write(arm_dir / "answers.jsonl") as f:
            f.writelines(json.dumps({"id": q["id"], "answer": a}, ensure_ascii=False) + "\n"
                         for q, a in zip(questions, res.answers))
        t = time.perf_counter()
        per_arm[res.strategy] = {"model": res.model, "trained": res.trained, "generated": res.generated,
                                 "cached": res.cached, "test_nll_per_char": res.test_nll_per_char,
                                 **{name: METRICS[name].per_question(res.answers, gold) for name in REFERENCE}}
        timings["reference"] = timings.get("reference", 0.0) + time.perf_counter() - t
        log.info("arm %s: model %s (%s), %d answers generated, %d cached", res.strategy, Path(res.model).name,
                 "trained" if res.trained else "reused", res.generated, res.cached)
    per_arm = {a.name: {"source": a.source, "rows": len(a.rows), **per_arm[a.name]} for a in arms}  # in the arms' order
    t = time.perf_counter()
    judge = build_client(cfg.judge.client)
    ours, pairs = arms[0].name, []
    for other in arms[1:]:
        judgments = judge_questions(judge, questions, answers[ours], answers[other.name], cfg.judge, seed=cfg.seed)
        with atomic_write(run_dir / "judgments" / f"{ours}_vs_{other.name}.jsonl") as f:
            f.writelines(json.dumps(j.as_dict(), ensure_ascii=False) + "\n" for j in judgments)
        diff = [a - b for a, b in zip(per_arm[ours]["rouge_l_char"], per_arm[other.name]["rouge_l_char"])]
        agree, n_agree = agreement(judgments, per_arm[ours]["rouge_l_char"], per_arm[other.name]["rouge_l_char"])
        pairs.append({"ours": ours, "theirs": other.name, **win_rate(judgments, boot=cfg.judge.boot, seed=cfg.seed).as_dict(),
                      "rouge_l_diff": mean_se(diff), "judge_rouge_agreement": agree, "agreement_questions": n_agree})
    timings["judge"] = time.perf_counter() - t
    out = {"questions": len(questions), "judge": judge.model, "arms": per_arm, "pairs": pairs, "timings": timings}
    with atomic_write(run_dir / "compare.json") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    write_tables(run_dir, out)
    if cfg.logger.kind != "none":  # names and numbers only: answers and verdicts stay in the run dir
        from autodp.tracking.wandb_run import log_sweep_table  # wandb is imported only where asked for

        log_sweep_table(run_dir, cfg.logger, "compare", f"compare-{run_dir.name}", PAIR_COLUMNS, pair_rows(out),
                        {"questions": len(questions), "arms": len(arms)})
    log.info("compare of %d arms on %d test questions: %s", len(arms), len(questions),
             ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return {"arms": [a.name for a in arms], "pairs": [(p["ours"], p["theirs"], p["wins"]) for p in pairs]}


PAIR_COLUMNS = ("ours", "theirs", "wins", "win_low", "win_high", "ties", "losses", "judged", "unparsed", "consistency",
                "rouge_l_diff", "rouge_l_diff_se", "judge_rouge_agreement")


def pair_rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**{k: p[k] for k in PAIR_COLUMNS if k in p}, "rouge_l_diff": p["rouge_l_diff"][0],
             "rouge_l_diff_se": p["rouge_l_diff"][1]} for p in out["pairs"]]


def write_tables(run_dir: Path, out: dict[str, Any]) -> list[Path]:
    """compare.md (arms, then the paper's win/tie/loss table), compare.csv (one line per pair), compare.png."""
    lines = [f"{out['questions']} test questions; judge {out['judge']}, each question in both orders.", "",
             "| arm | rows | test NLL/char | ROUGE-L (chars) | BLEU (chars) |", "|---|---|---|---|---|"]
    for name, a in out["arms"].items():
        cells = [f"{m:.2f} ± {se:.2f}" for m, se in (mean_se(a[k]) for k in REFERENCE)]
        lines.append(f"| {name} | {a['rows']} | {a['test_nll_per_char']:.4f} | {' | '.join(cells)} |")
    wins = [(p["ours"], p["theirs"], WinRate(**{k: p[k] for k in WinRate.__dataclass_fields__})) for p in out["pairs"]]
    lines += ["", table(wins), "| ours | theirs | ROUGE-L ours - theirs ± SE | judge and ROUGE-L agree (questions) |",
              "|---|---|---|---|"]
    lines += [f"| {p['ours']} | {p['theirs']} | {p['rouge_l_diff'][0]:+.2f} ± {p['rouge_l_diff'][1]:.2f} | "
              f"{p['judge_rouge_agreement']:.3f} ({p['agreement_questions']}) |" for p in out["pairs"]]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PAIR_COLUMNS)
    w.writeheader()
    w.writerows(pair_rows(out))
    groups = [f"{p['ours']} vs {p['theirs']}" for p in out["pairs"]]
    bars = {(g, k): (p[k], None) for g, p in zip(groups, out["pairs"]) for k in ("wins", "ties", "losses")}
    return write_files(run_dir, "compare", "\n".join(lines) + "\n", buf.getvalue(),
                       lambda path: grouped_bars(path, groups, ["wins", "ties", "losses"], bars,
                                                 "share of judged questions", "Our Wins / Ties / Our Losses"))
