"""All four teams with the CPU default models: every strategy of the space runs, and one strategy
that uses all four teams goes end to end through the evaluator (fine-tune and score), with PTS."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from autodp.accel.crm import Crm
from autodp.accel.screening import screening_model_path
from autodp.data.io import load_rows, write_rows
from autodp.data.noise import inject_noise
from autodp.data.specs import data_specs
from autodp.evaluate.evaluator import evaluate
from autodp.evaluate.request import EvalRequest
from autodp.ops.base import build_op, scale_counts, spec_name
from autodp.ops.teams import apply_strategy
from autodp.run import request_template, search_template
from autodp.strategy import Strategy, Team, strategy_space
from conftest import ROOT

torch.set_num_threads(1)
# One LLM call per operator and a short LESS warm-up: the contract, not the quality, is under test.
# SmolLM2 generates about twice as fast as Gemma on a CPU (a 49k-token vocabulary against 262k).
FAST = ["llm=smollm2", "llm.max_rows=1", "llm.max_pairs=1", "teams.selection.0.less_select.warmup_epochs=1",
        "teams.selection.0.less_select.n_val=8", "eval.seeds=1"]


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def sample(cmd_rows):
    """48 shipped rows with real noise made visible: markup, two missing answers, one missing question."""
    rows = inject_noise(cmd_rows[:48], 0.25, seed=3, kinds=("html",))
    rows[5] = {**rows[5], "output": ""}
    rows[17] = {**rows[17], "output": ""}
    rows[30] = {**rows[30], "instruction": ""}
    return rows


def op_names(strategy: Strategy, teams: dict) -> list[str]:
    return [spec_name(s) for t in strategy.teams for s in teams[t.value]]


@pytest.mark.slow
def test_every_strategy_of_the_space_runs_on_the_shipped_sample(cmd_rows, tmp_path):
    # Generation was nearly all of this test's time (456 s in CI with Gemma at full length); answers
    # cut at 48 tokens are rejected as cut off, which keeps the contract under test. Accepted
    # rewrites and pairs are required by test_optimization.py and test_generation.py.
    cfg = config(*FAST, "llm.client.max_tokens=48")
    teams = OmegaConf.to_container(cfg.teams, resolve=True)
    specs = data_specs(cfg, tmp_path)
    context = {"finetune": OmegaConf.to_container(cfg.finetune, resolve=True), "val": specs.target,
               "pool": specs.pool}
    rows = sample(cmd_rows)
    space = strategy_space()
    assert len(space) == 65
    # As a search with CRM runs them: each of the 64 distinct prefixes is processed once (not the
    # 196 team runs of 65 strategies from scratch), and a strategy continues from its stored prefix.
    crm = Crm(tmp_path / "crm")
    t0 = time.perf_counter()
    for strategy in space:
        out, reports = apply_strategy(strategy, rows, teams, context, crm)
        assert [r.op for r in reports] == op_names(strategy, teams), strategy.key
        # the space lists shorter strategies first, so every proper prefix was stored before
        assert sum(not r.cached for r in reports) == len(op_names(Strategy(strategy.teams[-1:]), teams)), strategy.key
        n = len(rows)
        for rep in reports:  # each operator gets what the previous one returned
            assert rep.rows_in == n, (strategy.key, rep)
            n = rep.rows_out
            if rep.team == Team.CLEANING.value:
                assert rep.rows_out <= rep.rows_in
            elif rep.team == Team.GENERATION.value:
                assert rep.rows_out >= rep.rows_in
            elif rep.team == Team.OPTIMIZATION.value:
                assert rep.rows_out == rep.rows_in and rep.rows_changed <= 1  # max_rows=1
            else:
                assert rep.rows_out == round(0.5 * rep.rows_in)
        assert len(out) == n
        if strategy.is_none:
            assert out == rows
        write_rows(tmp_path / "out.jsonl", out)  # a valid dataset: it reloads under the schema
        assert load_rows(tmp_path / "out.jsonl") == out
    print(f"\n65 strategies applied in {time.perf_counter() - t0:.0f} s")


@pytest.mark.slow
def test_one_strategy_with_all_four_teams_end_to_end_with_pts(cmd_rows, tmp_path):
    cfg = config(*FAST, "llm.max_rows=2", "accel.pts.enabled=true", "llm.client.max_tokens=48")
    data = tmp_path / "train.jsonl"
    write_rows(data, sample(cmd_rows) + cmd_rows[48:120])
    cfg.dataset.train, cfg.dataset.train_limit = str(data), None
    specs = data_specs(cfg, tmp_path / "splits")
    screener = screening_model_path(cfg)  # F of the shipped dataset, built once and cached
    req = replace(EvalRequest.from_config(cfg, *specs, out_dir=str(tmp_path / "datasets"), screener=str(screener)),
                  strategy="cleaning>optimization>generation>selection")
    res = evaluate(req)
    assert res.status == "ok", res.traceback
    teams = {op["team"] for op in res.ops}
    assert teams == {t.value for t in Team} and [op["op"] for op in res.ops] == op_names(
        Strategy.parse(req.strategy), req.teams)
    llm_ops = [op for op in res.ops if op["team"] in ("optimization", "generation")]
    assert len(llm_ops) == 5 and all("rows_skipped" in op and op["rows_processed"] <= 2 for op in llm_ops)
    # LESS chooses half of the rows F flags and keeps the clean ones
    sel = res.ops[-1]
    assert sel["rows_processed"] > 0 and sel["rows_processed"] + sel["rows_skipped"] == sel["rows_in"]
    assert res.rows_out == sel["rows_out"] == sel["rows_skipped"] + round(0.5 * sel["rows_processed"])
    assert len(load_rows(res.processed_path)) == res.rows_out
    assert res.score is not None and res.score < 0 and res.timings["finetune"] > 0


def generator_params(teams: dict) -> dict:
    return next(s["generate_qa_from_shots"] for s in teams["generation"] if "generate_qa_from_shots" in s)


@pytest.mark.parametrize("accel, expected", [("none", (2000, 1000, 2)), ("dps", (400, 200, 1)),
                                             ("all", (400, 200, 1))])
def test_dps_search_scales_counted_settings_and_the_export_does_not(tmp_path, accel, expected):
    cfg = config(f"accel={accel}")
    specs = data_specs(cfg, tmp_path / "splits")
    teams = search_template(cfg, specs, tmp_path, None).teams
    gen = generator_params(teams)
    assert (gen["num_new"], gen["max_input_rows"], gen["max_rows"]) == expected
    # what is not a count, and operators without counts, are left as configured
    written = OmegaConf.to_container(cfg.teams, resolve=True)
    assert {k: v for k, v in gen.items() if k not in ("num_new", "max_input_rows", "max_rows")} == \
        {k: v for k, v in generator_params(written).items() if k not in ("num_new", "max_input_rows", "max_rows")}
    for team in ("cleaning", "optimization", "selection"):
        assert teams[team] == written[team]
    # the winner's export at full size uses the settings as written
    assert request_template(cfg, specs, tmp_path, None).teams == written
    # the scaled generator adds ceil(2 x 0.2) = 1 pair to a sample (llm.max_pairs: 2)
    op = build_op({"generate_qa_from_shots": gen})
    assert op.work(gen["num_new"]) == expected[2]


def test_scaling_rounds_up_and_keeps_nulls():
    spec = {"generate_qa_from_shots": {"llm": {}, "num_new": 3, "max_input_rows": None, "max_rows": 1}}
    assert scale_counts(spec, 0.2)["generate_qa_from_shots"] == {"llm": {}, "num_new": 1, "max_input_rows": None,
                                                                 "max_rows": 1}
    assert scale_counts("minhash_dedup", 0.2) == "minhash_dedup"
