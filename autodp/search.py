"""The AutoDP loop between strategy generation (agent) and strategy evaluation (Figure 1).

Only strategy names, scores s_k = r_k - r_0 and safe failure reasons cross from evaluation to
the agent. Every agent answer and every evaluation is journaled in the run store first, so a
resumed run replays them instead of recomputing (never re-evaluating a finished strategy).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Protocol, Sequence

from autodp.agent.feedback import RoundFeedback
from autodp.evaluate.request import EvalRequest, EvalResult
from autodp.store import RunStore
from autodp.strategy import Strategy

log = logging.getLogger(__name__)
Executor = Callable[[Callable[[EvalRequest], EvalResult], Sequence[EvalRequest]], Iterable[EvalResult]]


@dataclass
class SearchOutcome:
    r0: float | None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, EvalResult] = field(default_factory=dict)   # by strategy key
    best: Strategy = Strategy(())
    stop_reason: str = ""
    agent_rounds: dict[str, int] = field(default_factory=dict)     # by proposal source
    reprompts: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def s(self, key: str) -> float | None:
        r = self.results.get(key)
        return None if r is None or r.score is None or self.r0 is None else r.score - self.r0


class SearchCallback(Protocol):
    """Sees each round once it is evaluated (round 0: the unprocessed baseline), e.g. to log it to
    W&B. What it gets is strategy names, scores, counts and timings: no sample text."""

    def on_round(self, rnd: int, proposal: dict[str, Any], results: list[EvalResult], out: SearchOutcome) -> None:
        ...


class Search:
    def __init__(self, agent: Any, template: EvalRequest, store: RunStore, run_many: Executor,
                 evaluate: Callable[[EvalRequest], EvalResult], max_rounds: int,
                 callbacks: Sequence[SearchCallback] = ()):
        self.agent, self.template, self.store = agent, template, store
        self.run_many, self.evaluate, self.max_rounds = run_many, evaluate, max_rounds
        self.callbacks = list(callbacks)
        self.done = {r["signature"]: EvalResult(**r) for r in store.read("evaluations.jsonl")}
        self.proposals = {p["round"]: p for p in store.read("agent/proposals.jsonl")}
        self.out = SearchOutcome(r0=None)

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
        return results

    def _time(self, stage: str, seconds: float) -> None:
        self.out.timings[stage] = self.out.timings.get(stage, 0.0) + seconds

    def _propose(self, rnd: int, history: list[RoundFeedback]) -> dict[str, Any]:
        if rnd in self.proposals:
            return self.proposals[rnd]
        t0 = time.perf_counter()
        p = self.agent.propose(rnd, history)
        self._time("agent", time.perf_counter() - t0)
        for turn in p.transcript:
            self.store.append("agent/transcript.jsonl", turn)
        rec = {"round": rnd, "strategies": [s.key for s in p.strategies], "decision": p.decision,
               "best": p.best.key if p.best else None, "source": p.source, "attempts": p.attempts,
               "reprompts": p.reprompts}
        self.store.append("agent/proposals.jsonl", rec)
        return rec

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
            p = self._propose(rnd, history)
            out.agent_rounds[p["source"]] = out.agent_rounds.get(p["source"], 0) + 1
            out.reprompts += p["reprompts"]
            out.rounds.append(p)
            if p["decision"] != "continue":
                out.stop_reason = f"agent decided '{p['decision']}' in round {rnd}"
                break
            strategies = [Strategy.parse(k) for k in p["strategies"]]
            results = self._evaluate(strategies)
            history.append(RoundFeedback(rnd, [(s, out.s(r.strategy), r.error) for s, r in zip(strategies, results)]))
            log.info("round %d: %s", rnd, ", ".join(f"{s.key}: s={_fmt(out.s(s.key))}" for s in strategies))
            for cb in self.callbacks:
                cb.on_round(rnd, p, results, out)
            if not any(r.status == "ok" for r in results):
                out.stop_reason = f"every strategy of round {rnd} failed"
                break
        else:
            out.stop_reason = f"reached max_rounds={self.max_rounds}"
        out.best = self._best(p)
        return out

    def _best(self, last: dict[str, Any]) -> Strategy:
        """The agent's final pick when it made one that was evaluated, else the top score."""
        if last["decision"] == "no_processing":
            return Strategy(())
        picked = self.out.results.get(last.get("best") or "")
        if last["decision"] == "best_team" and picked is not None and picked.status == "ok":
            return Strategy.parse(picked.strategy)
        ok = [r for r in self.out.results.values() if r.status == "ok"]
        return Strategy.parse(max(ok, key=lambda r: r.score).strategy)


def _fmt(s: float | None) -> str:
    return "failed" if s is None else f"{s:+.4f}"
