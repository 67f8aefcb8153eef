"""The search methods of conf/search: each as the paper describes it, on a synthetic evaluator
with a known score table (s per strategy, exact up to a small seed noise), plus every option
composed and run on a small real search through launch.py."""
from __future__ import annotations

import contextlib
import csv
import json
import random
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from autodp.agent import build_agent
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.proposal import Feedback, RoundFeedback
from autodp.search import Context, Search
from autodp.search.methods.autodp import agent_loop
from autodp.search.methods.fixed import Fixed
from autodp.search.methods.greedy import Greedy
from autodp.search.methods.mcts import MCTS, Tree
from autodp.search.methods.random import RandomSearch
from autodp.store import RunStore
from autodp.strategy import Strategy, Team, strategy_space
from conftest import ROOT

S = Strategy.parse
CONF = ROOT / "conf" / "search"
METHODS = sorted(p.stem for p in CONF.glob("*.yaml"))


def request() -> EvalRequest:
    return EvalRequest(strategy="none", train={}, val={}, target={}, pool={}, teams={}, finetune={}, eval={},
                       seed=0, out_dir="unused", seeds=2)


def table(teams=tuple(Team), seed: int = 0) -> dict[str, float]:
    """A known s for every strategy of ``teams``, distinct, some below none's 0."""
    rng = random.Random(seed)
    return {s.key: round(rng.uniform(-0.05, 0.05), 4) for s in strategy_space(teams) if not s.is_none}


class Evaluator:
    """r = -6 + s(strategy) + a seed effect every strategy shares + a tiny own noise; counts calls,
    and raises (a kill) on call number ``kill_at``."""

    def __init__(self, s: dict[str, float], kill_at: int | None = None):
        self.s, self.kill_at, self.calls = s, kill_at, []

    def __call__(self, req: EvalRequest) -> EvalResult:
        self.calls.append(req.strategy)
        if len(self.calls) == self.kill_at:
            raise KeyboardInterrupt("killed mid-evaluation")
        scores = [-6.0 + self.s.get(req.strategy, 0.0) + 0.1 * seed
                  + random.Random(f"{req.strategy}/{seed}").gauss(0, 1e-4) for seed in req.fit_seeds]
        return EvalResult(strategy=req.strategy, signature=req.signature, status="ok",
                          score=sum(scores) / len(scores), seed_scores=scores)


def run_many(fn, reqs):
    return map(fn, reqs)


def context(teams=tuple(Team), seed: int = 0) -> Context:
    return Context(teams=tuple(teams), seed=seed,
                   agent=lambda: build_agent({"client": None}, max_strategies=4, min_rounds=3, seed=seed,
                                             allowed_teams=list(teams)))


BUILD = {
    "autodp": agent_loop,
    "no_process": lambda ctx: Fixed(ctx, "none"),
    "all_process": lambda ctx: Fixed(ctx, "all"),
    "random": RandomSearch,
    "greedy": Greedy,
    "mcts": lambda ctx: MCTS(ctx, expansion="uniform"),
    "mcts_llm": MCTS,  # expansion proposed by the (rule-based) agent
}


def search(store: RunStore, method: str, evaluator: Evaluator, ctx: Context | None = None, budget: int = 20,
           max_rounds: int | None = None):
    rounds = max_rounds or (budget if method.startswith("mcts") else 5)
    return Search(BUILD[method](ctx or context()), request(), store, run_many, evaluator, rounds, pick="top",
                  budget=budget).run()


def test_every_conf_search_option_has_a_method_under_test():
    assert set(METHODS) == {m for m in BUILD if m != "mcts_llm"}


def composed(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["agent=heuristic", "teams=cleaning", *overrides])


@pytest.mark.parametrize("method", METHODS)
def test_every_option_builds_its_method_in_the_one_place(method):
    from autodp.run import build_proposer

    cfg = composed(f"search={method}")
    assert cfg.search.method == method and callable(build_proposer(cfg).propose)
    assert cfg.search.budget == 20 and (cfg.search.max_rounds == 20) == (method == "mcts")


def test_a_method_and_its_knobs_are_named_by_the_config_alone():
    from autodp.run import build_proposer

    cfg = composed("search=no_process", "search.proposer.strategy=cleaning")
    assert build_proposer(cfg).propose(1, []).strategies == [S("cleaning")]
    cfg = composed("search=autodp", "search.proposer._target_=autodp.search.methods.random.RandomSearch",
                   "+search.proposer.draws=1")
    assert len(build_proposer(cfg).propose(1, []).strategies) == 1


def test_random_returns_the_best_of_exactly_its_five_seeded_draws(tmp_path):
    s = table()
    for seed in (0, 1, 2):
        ev = Evaluator(s)
        out = search(RunStore(tmp_path / f"r{seed}"), "random", ev, context(seed=seed))
        draws = random.Random(seed).sample(strategy_space(), 5)
        assert sorted(ev.calls) == sorted({"none", *(d.key for d in draws)})  # none is r_0, drawn or not
        assert out.rounds[0]["strategies"] == [d.key for d in draws] and len(out.rounds) == 2
        best = max(draws, key=lambda d: s.get(d.key, 0.0))
        assert out.agent_best == best.key and out.best == best
    assert random.Random(0).sample(strategy_space(), 5) != random.Random(1).sample(strategy_space(), 5)


def test_greedy_evaluates_the_agents_first_round_and_returns_its_best(tmp_path):
    s = table()
    ev = Evaluator(s)
    out = search(RunStore(tmp_path), "greedy", ev)
    first = build_agent({"client": None}, max_strategies=4, min_rounds=3).propose(1, []).strategies
    assert ev.calls == ["none", *(f.key for f in first)]  # one round, no refinement
    assert [p["decision"] for p in out.rounds] == ["continue", "best_team"]
    assert out.best == max(first, key=lambda f: s[f.key])
    # the agent alone (autodp) goes on refining from the same first round
    auto = Evaluator(s)
    search(RunStore(tmp_path / "autodp"), "autodp", auto)
    assert auto.calls[:5] == ev.calls and len(auto.calls) > 5


def test_fixed_baselines_take_their_strategy_whatever_it_scores(tmp_path):
    s = {**table(), "cleaning>optimization>generation>selection": -0.04}
    ev = Evaluator(s)
    out = search(RunStore(tmp_path / "all"), "all_process", ev)
    assert ev.calls == ["none", "cleaning>optimization>generation>selection"]
    assert out.best == S("cleaning>optimization>generation>selection")
    ev = Evaluator(s)
    out = search(RunStore(tmp_path / "all_cs"), "all_process", ev, context([Team.SELECTION, Team.CLEANING]))
    assert ev.calls == ["none", "cleaning>selection"]  # the paper's order, over the offered teams
    ev = Evaluator(s)
    out = search(RunStore(tmp_path / "none"), "no_process", ev)
    assert ev.calls == ["none"] and out.best == Strategy(()) and out.spent == 0


def tree_of(out) -> Tree:
    """The MCTS tree as the search left it, rebuilt from the outcome's rounds."""
    return Tree([RoundFeedback(p["round"], [Feedback(S(k), out.s(k)) for k in p["strategies"]], p["meta"])
                 for p in out.rounds if p["decision"] == "continue"])


THREE = (Team.CLEANING, Team.OPTIMIZATION, Team.SELECTION)
# the optimum is three teams deep, and each step towards it pays a little; the rest is below none
PATH = {"cleaning": 0.01, "cleaning>selection": 0.02, "cleaning>selection>optimization": 0.04}
OPTIMUM = S("cleaning>selection>optimization")


@pytest.mark.parametrize("method, teams, budget", [("mcts", THREE, 10), ("mcts_llm", tuple(Team), 12)])
def test_mcts_finds_the_optimum_of_a_small_tree_within_its_budget(tmp_path, method, teams, budget):
    """Over 20 seeds (score tables and draws), against the chance that the same number of random
    draws holds the optimum: 10 of the 15 strategies of three teams, 12 of the 64 of four."""
    space = [s for s in strategy_space(teams) if not s.is_none]
    found = chance = 0
    for seed in range(20):
        s = {**{k: -abs(v) / 5 for k, v in table(teams, seed).items()}, **PATH}
        ev = Evaluator(s)
        out = search(RunStore(tmp_path / str(seed)), method, ev, context(teams, seed), budget=budget)
        assert out.spent <= budget and len(ev.calls) == len(set(ev.calls)) == out.spent + 1
        found += out.best == OPTIMUM
        chance += OPTIMUM in random.Random(seed).sample(space, budget)
        tree = tree_of(out)
        assert tree.nodes[Strategy(())].visits == out.spent + 1  # every evaluation, r_0's too, reaches the root
        for node in tree.nodes.values():  # and each node's visits are its own plus its children's
            assert node.visits == node.evaluated + sum(tree.nodes[c].visits for c in node.children)
            assert all(c.teams[:-1] == node.strategy.teams for c in node.children)  # a child appends a team
    assert found >= 18 and chance <= 15, (found, chance)


def test_mcts_stops_when_the_tree_is_exhausted(tmp_path):
    ev = Evaluator(table((Team.CLEANING, Team.SELECTION)))
    out = search(RunStore(tmp_path), "mcts", ev, context((Team.CLEANING, Team.SELECTION)), budget=20)
    assert sorted(ev.calls) == ["cleaning", "cleaning>selection", "none", "selection", "selection>cleaning"]
    assert out.rounds[-1]["decision"] in ("best_team", "no_processing")


@pytest.mark.parametrize("method", sorted(BUILD))
def test_no_method_exceeds_the_budget(tmp_path, method):
    ev = Evaluator(table())
    out = search(RunStore(tmp_path), method, ev, budget=3, max_rounds=8)
    assert out.spent <= 3 and len(ev.calls) == out.spent + 1
    if method in ("autodp", "random", "greedy"):  # their first round alone asks for more than 3
        assert out.spent == 3 and out.rounds[0]["over_budget"]


@pytest.mark.parametrize("method", sorted(BUILD))
def test_resume_after_a_kill_recomputes_nothing_finished(tmp_path, method):
    s = table()
    reference = search(RunStore(tmp_path / "ref"), method, Evaluator(s), budget=8)
    store = RunStore(tmp_path / "run")
    killed = Evaluator(s, kill_at=4)  # r_0 and two strategies are journaled, the third is in flight
    with pytest.raises(KeyboardInterrupt) if reference.spent >= 3 else contextlib.nullcontext():
        search(store, method, killed, budget=8)
    finished = [e["strategy"] for e in store.read("evaluations.jsonl")]
    resumed = Evaluator(s)
    out = search(store, method, resumed, budget=8)
    assert not set(resumed.calls) & set(finished)
    assert len(store.read("evaluations.jsonl")) == len(set(e["signature"] for e in store.read("evaluations.jsonl")))
    assert (out.best, out.spent, out.rounds) == (reference.best, reference.spent, reference.rounds)


def test_the_methods_table_summarises_each_method_over_its_seeds_and_goes_to_wandb(tmp_path):
    """Two methods x two seeds of synthetic searches written as runs of a sweep: the table holds
    the picks, the mean score over seeds with its SE across them, the held-out delta, the time."""
    from autodp.tracking.methods import collect, summary_rows, write_methods
    from autodp.tracking.summary import report
    from autodp.tracking.methods import log_methods
    from wandb_testing import offline_runs

    s, sweep, every = table(), tmp_path / "sweep", "cleaning>optimization>generation>selection"
    picks = {}
    for method in ("random", "all_process"):
        for seed in (0, 1):
            store = RunStore(sweep / f"{method}-{seed}")
            out = search(store, method, Evaluator(s), context(seed=seed))
            out.timings["total"] = 60.0 * (seed + 1)
            if method == "all_process":  # as autodp.confirm reports a held-out test
                out.confirmation = {"winner": every, "failed": {}, "arms": {every: {
                    "delta": 0.01 * (seed + 1), "se": 0.001, "wins": 3, "ties": 0, "losses": 1}}}
            picks[(method, seed)] = out.best.key
            report(out, store, f"{method}{seed}")
            OmegaConf.save(composed(f"search={method}", f"seed={seed}"), store.path("config.yaml"), resolve=True)
    write_methods(sweep)
    rows = {r["method"]: r for r in summary_rows(collect(sweep))}
    assert rows["all_process"]["picks"] == f"{every} ×2" and rows["all_process"]["runs"] == 2
    assert rows["all_process"]["val"][0] == pytest.approx(s[every], abs=1e-3)
    assert rows["all_process"]["test"] == pytest.approx((0.015, 0.005))  # mean of 0.01, 0.02 and its SE
    assert rows["all_process"]["wall_min"] == pytest.approx(1.5) and rows["all_process"]["evaluations"] == 1
    assert rows["random"]["test"] == (None, None)
    assert rows["random"]["val"][0] == pytest.approx((s[picks["random", 0]] + s[picks["random", 1]]) / 2, abs=1e-3)
    assert "| random | 2 |" in (sweep / "methods.md").read_text()
    log_methods(sweep, OmegaConf.create({"kind": "wandb", "project": "autodp-test", "mode": "offline"}))
    (run,) = offline_runs(sweep)
    assert run.job_type == "methods"
    logged = run.table(run.summary, "methods")
    assert sorted((r["method"], r["seed"], r["best"]) for r in logged) == \
        sorted((m, seed, b) for (m, seed), b in picks.items())


@pytest.mark.slow
def test_every_search_option_composes_and_runs_a_small_search(tmp_path):
    """One multirun over every conf/search option: the Cleaning team, the rule-based agent, two
    seeds, no held-out confirmation."""
    sweep = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "launch.py", "-m", f"search={','.join(METHODS)}", "agent=heuristic",
                        "teams=cleaning", "dataset.train_limit=60", "eval.val_limit=30", "eval.seeds=2",
                        "search.confirm=false", "logger=none", f"hydra.sweep.dir={sweep}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stderr[-5000:]
    runs = {OmegaConf.load(p.parent / "config.yaml").search.method: json.loads(p.read_text())
            for p in sweep.glob("*/results.json")}
    assert sorted(runs) == METHODS
    assert runs["no_process"]["best"] == "none" and runs["no_process"]["evaluations"] == 0
    assert runs["all_process"]["best"] == "cleaning" and runs["all_process"]["evaluations"] == 1
    assert all(res["evaluations"] <= 1 for res in runs.values())  # teams=cleaning: one strategy to try
    # the Hydra callback wrote the methods table into the sweep dir
    table = (sweep / "methods.md").read_text()
    assert [line.split(" | ")[1] for line in table.splitlines()[2:2 + len(METHODS)]] == METHODS
    rows = list(csv.DictReader((sweep / "methods.csv").open()))
    assert sorted(r["method"] for r in rows) == METHODS
    assert {r["best"] for r in rows if r["method"] == "no_process"} == {"none"}
    assert all(float(r["wall_seconds"]) > 0 and r["val_s"] for r in rows)
    assert (sweep / "methods.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
