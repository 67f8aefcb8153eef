"""Scores as estimates: paired seeds, pooled standard errors, the pick rule, noise in the agent's
feedback, and the rule against rounds of already evaluated strategies.

The searches here use a synthetic evaluator with a known mean per strategy and known seed noise,
so the pick rule's error rates can be counted over many simulated searches.
"""
from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import pytest

from autodp.agent import Agent, build_agent, render_prompt
from autodp.evaluate.estimate import differences, pooled, threshold
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.proposal import Feedback, RoundFeedback
from autodp.search import Search
from autodp.store import RunStore
from autodp.strategy import Strategy

S = Strategy.parse


def request(seeds: int = 3) -> EvalRequest:
    return EvalRequest(strategy="none", train={}, val={}, target={}, pool={}, teams={}, finetune={}, eval={},
                       seed=0, out_dir="unused", seeds=seeds)


def synthetic(means: dict[str, float], sd: float, trial: int):
    """R(f) per seed = mean of f + a seed effect shared by every strategy + its own noise, as
    fine-tunes with matched seeds behave; strategies not in ``means`` score like none."""
    def evaluate(req: EvalRequest) -> EvalResult:
        scores = []
        for seed in req.fit_seeds:
            shared = random.Random(f"{trial}/{seed}").gauss(0, 5 * sd)
            own = random.Random(f"{trial}/{seed}/{req.strategy}").gauss(0, sd)
            scores.append(-6.0 + means.get(req.strategy, 0.0) + shared + own)
        return EvalResult(strategy=req.strategy, signature=req.signature, status="ok",
                          score=statistics.fmean(scores), seed_scores=scores)
    return evaluate


def run_many(fn, reqs):
    return map(fn, reqs)


def simulate(tmp: Path, means: dict[str, float], trial: int, pick: str = "significant", **kw):
    agent = build_agent({"client": None}, max_strategies=4, min_rounds=5)
    return Search(agent, request(), RunStore(tmp / f"run{trial}"), run_many, synthetic(means, 0.01, trial),
                  max_rounds=3, pick=pick, **kw).run()


def test_pooled_standard_error_and_threshold():
    est, df = pooled({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 3.0]})
    # within-strategy sums of squares 2 and 6 over 2 + 2 degrees of freedom: sd = sqrt(2)
    assert df == 4
    assert est["a"].mean == 2.0 and est["a"].se == pytest.approx(math.sqrt(2) / math.sqrt(3))
    assert est["b"].se == est["a"].se
    # what is left out of the pool (none, copies of its data) does not shrink the SE
    with_none, df3 = pooled({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 3.0], "none": [0.0] * 3}, pool={"a", "b"})
    assert df3 == 4 and with_none["a"].se == est["a"].se and with_none["none"].mean == 0.0
    assert pooled({"a": [1.0]}) == ({"a": pytest.approx(est["a"].__class__(1.0, None, 1))}, 0)
    assert threshold(2.0, 10_000, 1, "none") == pytest.approx(2.0, abs=0.01)
    assert threshold(2.0, 4, 1, "none") > 2.5  # few degrees of freedom: a t quantile, not 2
    assert threshold(2.0, 10_000, 10, "bonferroni") > threshold(2.0, 10_000, 1, "bonferroni")
    with pytest.raises(ValueError, match="same seeds"):
        differences([1.0, 2.0], [1.0])


def test_with_no_true_effect_the_rule_rarely_declares_a_winner(tmp_path):
    """Every strategy scores like none: a declared winner is a false positive."""
    trials = 120
    wins = sum(simulate(tmp_path, {}, t).best != Strategy(()) for t in range(trials))
    top = sum(simulate(tmp_path / "top", {}, t, pick="top").best != Strategy(()) for t in range(40))
    assert wins / trials <= 0.05, f"{wins} false winners in {trials} null searches"
    assert top / 40 >= 0.5  # the plain top score almost always "wins" by noise alone


def test_a_real_effect_is_found_and_is_the_one_declared(tmp_path):
    """0.05 is ~6 SEs of a 3-seed paired difference here (seed noise 0.01 a strategy): found
    almost always; 0.03 (~3.7 SEs against a ~3.2-SE Bonferroni bar) was found in 44 of 60."""
    trials = 60
    picks = [simulate(tmp_path, {"cleaning": 0.05, "generation": -0.05}, t).best for t in range(trials)]
    assert sum(p == S("cleaning") for p in picks) / trials >= 0.9
    assert all(p in (S("cleaning"), Strategy(())) for p in picks)


def test_outcome_carries_estimates_and_both_choices(tmp_path):
    out = simulate(tmp_path, {"cleaning": 0.05}, 0)
    e = out.estimates["cleaning"]
    assert e.n == 3 and e.se > 0 and out.df > 0 and out.threshold > 2
    assert out.beyond_noise("cleaning") and not out.beyond_noise("generation")
    assert out.best == S("cleaning") and "beating none" in out.pick_reason
    assert out.estimates["none"].mean == 0.0


def test_pick_significant_refuses_one_seed(tmp_path):
    with pytest.raises(ValueError, match="eval.seeds >= 2"):
        Search(None, request(seeds=1), RunStore(tmp_path), run_many, synthetic({}, 0.01, 0), max_rounds=5,
               pick="significant")
    with pytest.raises(ValueError, match="search.max_rounds=-1: expected an integer >= 1"):
        Search(None, request(), RunStore(tmp_path), run_many, synthetic({}, 0.01, 0), max_rounds=-1)


def test_feedback_with_noise_marks_scores_within_noise():
    history = [RoundFeedback(1, [Feedback(S("cleaning"), 0.0312, None, 0.0051, True),
                                 Feedback(S("selection"), -0.0042, None, 0.0051, False),
                                 Feedback(S("generation"), None, "evaluation failed (ValueError)")])]
    agent = Agent(None)
    rules = agent.rules(2, history)
    noisy = render_prompt(2, history, rules, False, "with_noise")
    assert "Feedback Score: 0.0312 ± 0.0051 (better than the original data)" in noisy
    assert "Feedback Score: -0.0042 ± 0.0051 (within noise of the original data)" in noisy
    assert "failed: evaluation failed (ValueError)" in noisy
    paper = render_prompt(2, history, rules, False, "paper")
    assert "Feedback Score: 0.0312\n" in paper and "±" not in paper
    with pytest.raises(ValueError, match="agent.feedback"):
        build_agent({"client": None, "feedback": "loud"})


class Repeating:
    """A model that keeps proposing the same combination."""

    def __init__(self):
        self.prompts: list[str] = []

    def complete(self, messages, schema, seed):
        self.prompts.append(messages[0]["content"])
        return "###Combination[1]###\n- Data Cleaning Team\n"


def test_a_round_of_evaluated_strategies_is_sent_back_then_stops_the_search(tmp_path):
    backend = Repeating()
    agent = Agent(backend, min_rounds=5)
    store = RunStore(tmp_path / "run")
    out = Search(agent, request(), store, run_many, synthetic({}, 0.01, 0), max_rounds=5, pick="top").run()
    # round 1 evaluates cleaning; round 2 repeats it, is told so, repeats again: stop
    assert len(backend.prompts) == 3
    assert "already been evaluated: Data Cleaning Team" in backend.prompts[2]
    assert "already been evaluated" not in backend.prompts[1]
    assert out.repeat_proposals == 2 and "only evaluated strategies again" in out.stop_reason
    assert [(p["round"], p["ask"]) for p in store.read("agent/proposals.jsonl")] == [(1, 0), (2, 0), (2, 1)]
    # a resume replays the journal: no new model call, same outcome
    again = Search(Agent(Repeating(), min_rounds=5), request(), store, run_many, synthetic({}, 0.01, 0),
                   max_rounds=5, pick="top")
    again.proposer.backend.complete = None  # any model call would now fail
    replay = again.run()
    assert (replay.stop_reason, replay.repeat_proposals, replay.best) == (out.stop_reason, 2, out.best)


def test_confirmation_scores_the_arms_on_test_pairs_rows_and_resumes(tmp_path):
    from autodp.confirm import arms, confirm, lines
    from autodp.strategy import Team

    calls = []

    def evaluate(req: EvalRequest) -> EvalResult:
        """Row j of the test split gains 0.01 under cleaning, except every fourth row, which is a
        tie; all-process loses 0.02 on every row. Seeds move every arm alike."""
        calls.append(req.strategy)
        assert req.val == {"path": "test.jsonl"} and req.eval["per_row"]
        gain = {"cleaning": 0.01, "none": 0.0}.get(req.strategy, -0.02)
        rows = [[-6.0 + 0.1 * seed + (0.0 if (j % 4 == 0 and gain > 0) else gain) for j in range(8)]
                for seed in req.fit_seeds]
        return EvalResult(strategy=req.strategy, signature=req.signature, status="ok",
                          score=statistics.fmean(statistics.fmean(r) for r in rows),
                          seed_scores=[statistics.fmean(r) for r in rows], row_scores=rows,
                          data_fingerprint=req.strategy)

    teams = [Team.CLEANING, Team.SELECTION]
    assert arms(S("cleaning"), teams) == [S("cleaning"), Strategy(()), S("cleaning>selection")]
    assert arms(S("cleaning>selection"), teams) == [S("cleaning>selection"), Strategy(())]
    store = RunStore(tmp_path)
    c = confirm(request(), {"path": "test.jsonl"}, S("cleaning"), teams, store, run_many, evaluate, 1e-4)
    assert sorted(calls) == ["cleaning", "cleaning>selection", "none"] and c["rows"] == 8
    win = c["arms"]["cleaning"]
    assert (win["wins"], win["ties"], win["losses"]) == (6, 2, 0)
    assert win["delta"] == pytest.approx(0.0075)
    assert c["arms"]["cleaning>selection"]["losses"] == 8
    assert lines(c)[0].startswith("winner cleaning vs none on test: +0.0075")
    again = confirm(request(), {"path": "test.jsonl"}, S("cleaning"), teams, store, run_many, evaluate, 1e-4)
    assert len(calls) == 3 and again == c  # journaled: nothing fine-tuned twice


def test_matched_budget_trains_every_strategy_for_the_unprocessed_datas_steps(monkeypatch):
    from autodp.evaluate.schedule import matched_budget

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ft = {"batch_size": 16, "epochs": 1, "budget": "steps"}
    assert matched_budget(ft, 400)["max_steps"] == 25  # 400 rows / 16, whatever a strategy kept
    assert matched_budget({**ft, "epochs": 3, "global_batch_size": 64}, 400)["max_steps"] == 19
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert matched_budget({**ft, "global_batch_size": 64}, 400)["max_steps"] == 7
    assert matched_budget({**ft, "budget": "epochs"}, 400) == {**ft, "budget": "epochs"}
    assert matched_budget({**ft, "max_steps": 6}, 400)["max_steps"] == 6
    with pytest.raises(ValueError, match="finetune.budget"):
        matched_budget({**ft, "budget": "tokens"}, 400)
