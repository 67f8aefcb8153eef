"""The loop between strategy generation (a search method) and strategy evaluation (Figure 1).

The method (a ``Proposer``, autodp/search/proposer.py: the paper's agent or a baseline) proposes
rounds; the loop owns what every method shares. Only strategy names, scores s_k = r_k - r_0 (with
their standard errors) and safe failure reasons cross from evaluation to the method. Every
proposal and every evaluation is journaled in the run store first, so a resumed run replays them
instead of recomputing (never re-evaluating a finished strategy). At most ``budget`` strategies
besides no processing are evaluated. The winner is the method's final choice, its "Best Team"
(``pick=top``, the paper's), or the strategy that beats the unprocessed data beyond noise
(``pick=significant``); both are reported.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Protocol, Sequence

from autodp.config_checks import check_search, check_values
from autodp.evaluate.estimate import Estimate, seed_scores, threshold, versus
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.proposal import Feedback, RoundFeedback
from autodp.search.proposer import Proposer
from autodp.store import RunStore, reusable
from autodp.strategy import Strategy

log = logging.getLogger(__name__)
Executor = Callable[[Callable[[EvalRequest], EvalResult], Sequence[EvalRequest]], Iterable[EvalResult]]


@dataclass
class SearchOutcome:
    r0: float | None
    rounds: list[dict[str, Any]] = field(default_factory=list)    # the proposals, as journaled
    results: dict[str, EvalResult] = field(default_factory=dict)   # by strategy key
    best: Strategy = Strategy(())
    stop_reason: str = ""
    budget: int | None = None  # strategies besides none the search may evaluate (None: no limit)
    timings: dict[str, float] = field(default_factory=dict)
    estimates: dict[str, Estimate] = field(default_factory=dict)  # s = r - r0 per strategy, with its SE
    df: int = 0                                                   # degrees of freedom of the pooled SE
    threshold: float | None = None  # how many SEs s must exceed to count beyond noise (pick=significant)
    pick: str = "top"
    pick_reason: str = ""
    agent_best: str | None = None   # the method's own final choice (the agent's Best Team), when it made one
    repeat_proposals: int = 0       # proposals that held only evaluated strategies
    confirmation: dict[str, Any] | None = None  # the held-out test scores (autodp.confirm), when run

    @property
    def spent(self) -> int:
        """Strategies evaluated besides no processing: what counts against the budget."""
        return sum(k != "none" for k in self.results)

    def s(self, key: str) -> float | None:
        e = self.estimates.get(key)
        return None if e is None else e.mean

    def se(self, key: str) -> float | None:
        e = self.estimates.get(key)
        return None if e is None else e.se

    def beyond_noise(self, key: str) -> bool | None:
        """Whether s beats 0 by more than ``threshold`` SEs; None without an SE."""
        e = self.estimates.get(key)
        if e is None or not e.se or self.threshold is None:
            return None
        return e.mean > self.threshold * e.se


class SearchCallback(Protocol):
    """Sees each round once it is evaluated (round 0: the unprocessed baseline), e.g. to log it to
    W&B. What it gets is strategy names, scores, counts and timings: no sample text."""

    def on_round(self, rnd: int, proposal: dict[str, Any], results: list[EvalResult], out: SearchOutcome) -> None:
        ...


class Search:
    def __init__(self, proposer: Proposer, template: EvalRequest, store: RunStore, run_many: Executor,
                 evaluate: Callable[[EvalRequest], EvalResult], max_rounds: int,
                 callbacks: Sequence[SearchCallback] = (), *, pick: str = "top", z: float = 2.0,
                 correction: str = "bonferroni", repeat_reasks: int = 1, budget: int | None = None,
                 retry_failed: bool = True):
        check_values({"search.pick": pick, "search.max_rounds": max_rounds, "search.budget": budget,
                      "eval.seeds": template.seeds, "search.z": z, "search.correction": correction,
                      "search.repeat_reasks": repeat_reasks})
        check_search(pick, template.seeds)
        self.proposer, self.template, self.store = proposer, template, store
        self.run_many, self.evaluate, self.max_rounds = run_many, evaluate, max_rounds
        self.callbacks = list(callbacks)
        self.z, self.correction, self.repeat_reasks = z, correction, repeat_reasks
        self.done = {s: EvalResult(**r) for s, r in reusable(store.read("evaluations.jsonl"), retry_failed).items()}
        # a round sent back for repeating evaluated strategies journals one proposal per ask
        self.proposals: dict[tuple[int, int], dict[str, Any]] = {
            (p["round"], p.get("ask", 0)): p for p in store.read("agent/proposals.jsonl")}
        self.out = SearchOutcome(r0=None, pick=pick, budget=budget)

    def _evaluate(self, strategies: list[Strategy]) -> list[EvalResult]:
        reqs = [replace(self.template, strategy=s.key) for s in strategies]
        todo = [q for q in reqs if q.signature not in self.done]
        if len(todo) < len(reqs):
            log.info("reusing %d finished evaluation(s) from the run store", len(reqs) - len(todo))
        t0 = time.perf_counter()
        for res in self.run_many(self.evaluate, todo):
            self.store.append("evaluations.jsonl", res.as_dict())
            self.done[res.signature] = res
            for stage, seconds in res.timings.items():
                self._time(f"eval.{stage}", seconds)
        self._time("evaluate", time.perf_counter() - t0)
        results = [self.done[q.signature] for q in reqs]
        self.out.results.update((r.strategy, r) for r in results)
        self._estimate()
        return results

    def _estimate(self) -> None:
        """s and its pooled SE for every strategy scored so far, paired with none seed by seed."""
        out, base = self.out, self.out.results.get("none")
        if base is None or base.status != "ok":
            return
        out.estimates, out.df = versus(base, out.results)
        out.estimates["none"] = Estimate(0.0, None, len(seed_scores(base)))  # the reference itself
        out.threshold = threshold(self.z, out.df, len(out.estimates) - 1, self.correction) if out.df else None

    def _time(self, stage: str, seconds: float) -> None:
        self.out.timings[stage] = self.out.timings.get(stage, 0.0) + seconds

    def _propose(self, rnd: int, history: list[RoundFeedback], ask: int = 0, note: str | None = None) -> dict[str, Any]:
        if (rnd, ask) in self.proposals:
            return self.proposals[(rnd, ask)]
        t0 = time.perf_counter()
        p = self.proposer.propose(rnd, history, note=note)
        self._time("agent", time.perf_counter() - t0)  # the method's own time, whatever it is
        for turn in p.transcript:
            self.store.append("agent/transcript.jsonl", turn)
        rec = {"round": rnd, "ask": ask, "strategies": [s.key for s in p.strategies], "decision": p.decision,
               "best": p.best.key if p.best else None, "meta": p.meta}
        self.store.append("agent/proposals.jsonl", rec)
        return rec

    def _propose_new(self, rnd: int, history: list[RoundFeedback]) -> tuple[dict[str, Any], bool]:
        """The round's proposal; one that holds only evaluated strategies is sent back, naming
        them, up to ``repeat_reasks`` times. (proposal, whether it still repeats)."""
        p = self._propose(rnd, history)
        for ask in range(1, self.repeat_reasks + 1):
            if not self._repeats(p):
                break
            self.out.repeat_proposals += 1
            note = ("Every combination you proposed has already been evaluated: "
                    f"{'; '.join(Strategy.parse(k).label for k in p['strategies'])}. "
                    "Propose combinations that have not been evaluated yet, or stop.")
            p = self._propose(rnd, history, ask, note)
        repeats = self._repeats(p)
        self.out.repeat_proposals += repeats
        return p, repeats

    def _repeats(self, p: dict[str, Any]) -> bool:
        return p["decision"] == "continue" and all(k in self.out.results for k in p["strategies"])

    def _feedback(self, p: dict[str, Any]) -> RoundFeedback:
        out = self.out
        return RoundFeedback(p["round"], [Feedback(Strategy.parse(k), out.s(k), out.results[k].error, out.se(k),
                                                   out.beyond_noise(k)) for k in p["strategies"]],
                             p.get("meta") or {})  # journals from before methods had no meta

    def _within_budget(self, p: dict[str, Any]) -> dict[str, Any]:
        """The proposal less the new strategies past the budget (already evaluated ones cost nothing)."""
        if self.out.budget is None:
            return p
        left, kept, dropped = self.out.budget - self.out.spent, [], []
        for k in p["strategies"]:
            if k in self.out.results:
                kept.append(k)
            elif left > 0:
                kept.append(k)
                left -= 1
            else:
                dropped.append(k)
        return {**p, "strategies": kept, "over_budget": dropped} if dropped else p

    def run(self) -> SearchOutcome:
        out = self.out
        (base,) = self._evaluate([Strategy(())])
        if base.status != "ok":
            raise RuntimeError(f"the unprocessed baseline r_0 failed: {base.error}\n{base.traceback}")
        out.r0 = base.score
        for cb in self.callbacks:
            cb.on_round(0, {"round": 0, "strategies": ["none"], "decision": "continue"}, [base], out)
        history: list[RoundFeedback] = []
        for rnd in range(1, self.max_rounds + 1):
            if out.budget is not None and out.spent >= out.budget:
                out.stop_reason = f"spent the evaluation budget ({out.budget} strategies) after round {rnd - 1}"
                break
            p, repeats = self._propose_new(rnd, history)
            p = self._within_budget(p)
            out.rounds.append(p)
            if p["decision"] != "continue":
                out.stop_reason = f"the method decided '{p['decision']}' in round {rnd}"
                out.agent_best = "none" if p["decision"] == "no_processing" else p.get("best")
                break
            if repeats:
                out.stop_reason = (f"round {rnd}: the method proposed only evaluated strategies again after "
                                   f"{self.repeat_reasks} re-ask(s)")
                break
            strategies = [Strategy.parse(k) for k in p["strategies"]]
            results = self._evaluate(strategies)
            # the SEs are pooled over every strategy so far: each round's feedback is re-derived
            history = [self._feedback(q) for q in out.rounds]
            log.info("round %d: %s", rnd, ", ".join(f"{s.key}: s={_fmt(out.s(s.key), out.se(s.key))}"
                                                    for s in strategies))
            for cb in self.callbacks:
                cb.on_round(rnd, p, results, out)
            if not any(r.status == "ok" for r in results):
                out.stop_reason = f"every strategy of round {rnd} failed"
                break
        else:
            out.stop_reason = f"reached max_rounds={self.max_rounds}"
        out.best, out.pick_reason = self._pick()
        return out

    def _pick(self) -> tuple[Strategy, str]:
        out = self.out
        ok = [k for k, r in out.results.items() if r.status == "ok" and k != "none" and k in out.estimates]
        if out.pick == "top":
            chosen = out.results.get(out.agent_best or "")
            if out.agent_best == "none":
                return Strategy(()), "the method chose no processing"
            if chosen is not None and chosen.status == "ok":
                return Strategy.parse(out.agent_best), "the method's Best Team"
            if not ok or max(out.s(k) for k in ok) <= 0:
                return Strategy(()), "no strategy scored above the unprocessed data"
            top = max(ok, key=out.s)
            return Strategy.parse(top), "the top score s"
        wins = [k for k in ok if out.beyond_noise(k)]
        if not wins:
            return Strategy(()), (f"no strategy beat the unprocessed data beyond noise "
                                  f"(s > {_threshold(out)} SE)")
        top = max(wins, key=out.s)
        return Strategy.parse(top), f"the top score among {len(wins)} beating none by > {_threshold(out)} SE"


def _threshold(out: SearchOutcome) -> str:
    return "-" if out.threshold is None else f"{out.threshold:.2f}"


def _fmt(s: float | None, se: float | None = None) -> str:
    return "failed" if s is None else f"{s:+.4f}" + ("" if se is None else f" ± {se:.4f}")
