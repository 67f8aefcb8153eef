"""The strategy-generation loop of section 3.2, one round per `Agent.propose` call.

Prompt (initial or iterative, with the whole history), answer, parse; an unusable answer goes
back to the model with the reason, and after `max_reprompts` the rule-based agent completes the
round. The agent sees strategies and scores only: the privacy boundary of the paper.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from autodp.agent.heuristic import HeuristicAgent
from autodp.agent.parser import Answer, ParseError, answer_schema, parse_json, parse_text
from autodp.agent.prompting import FEEDBACK, render_prompt
from autodp.llm import LLMClient, build_client
from autodp.proposal import Proposal, RoundFeedback, Rules, scores
from autodp.strategy import MAX_TEAMS, Team

log = logging.getLogger(__name__)


class Backend(Protocol):
    def complete(self, messages: list[dict], schema: dict | None, seed: int) -> str:
        """The assistant's reply to a chat; with a schema, JSON that follows it."""


class AgentError(RuntimeError):
    """No usable answer and no fallback."""


def derive_seed(seed: int, round: int, attempt: int) -> int:
    """A seed per (run, round, attempt): reruns repeat, attempts differ."""
    digest = hashlib.sha256(f"{seed}/{round}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Agent:
    def __init__(self, backend: Backend | None, *, heuristic: HeuristicAgent | None = None,
                 structured: bool = False, max_reprompts: int = 2, fallback: bool = True,
                 max_strategies: int = 4, max_teams: int = MAX_TEAMS, min_rounds: int = 2, seed: int = 0,
                 allowed_teams: tuple[Team, ...] | list[Team] = tuple(Team), feedback: str = "paper"):
        """backend None: the heuristic answers every round itself. ``feedback``: how scores are
        shown (prompting.FEEDBACK)."""
        self.backend, self.heuristic = backend, heuristic or HeuristicAgent()
        self.structured, self.max_reprompts, self.fallback = structured, max_reprompts, fallback
        self.max_strategies, self.max_teams, self.min_rounds, self.seed = max_strategies, max_teams, min_rounds, seed
        self.teams = tuple(Team(t) for t in allowed_teams)
        self.feedback = feedback

    def rules(self, round: int, history: list[RoundFeedback]) -> Rules:
        # round 1 has nothing to choose from, hence at least 2
        return Rules(self.teams, self.max_strategies, self.max_teams,
                     can_stop=round >= max(2, self.min_rounds), evaluated=frozenset(scores(history)))

    def propose(self, round: int, history: list[RoundFeedback], note: str | None = None) -> Proposal:
        """``note``: a word from the search appended to the prompt (the heuristic never repeats)."""
        rules = self.rules(round, history)
        if self.backend is None:
            return _proposal(self.heuristic.answer(round, history, rules), "heuristic")
        prompt = render_prompt(round, history, rules, self.structured, self.feedback, note)
        messages = [{"role": "user", "content": prompt}]
        schema = answer_schema(rules) if self.structured else None
        parse = parse_json if self.structured else parse_text
        transcript: list[dict] = []
        for attempt in range(self.max_reprompts + 1):
            t0 = time.perf_counter()
            # a backend error (server down, out of memory) propagates: it says nothing about the model
            response = self.backend.complete(messages, schema, derive_seed(self.seed, round, attempt))
            try:
                answer, error = parse(response, rules), None
            except ParseError as e:
                answer, error = None, str(e)
            seconds = float(f"{time.perf_counter() - t0:.3f}")  # `round` is taken by the argument
            transcript.append(dict(round=round, attempt=attempt, messages=messages,
                                   response=response, error=error, seconds=seconds))
            log.info("round %d attempt %d: %.1f s, %s", round, attempt, seconds, error or "ok")
            if answer is not None:
                return _proposal(answer, "model", attempt + 1, attempt, transcript)
            messages = messages + [
                {"role": "assistant", "content": response},
                {"role": "user", "content": f"Your answer could not be used: {error}. Answer again in the required format."},
            ]
        if not self.fallback:
            raise AgentError(f"round {round}: no usable answer in {self.max_reprompts + 1} attempts: {error}")
        log.warning("round %d: no usable answer from the model, the heuristic completes the round", round)
        return _proposal(self.heuristic.answer(round, history, rules), "fallback:heuristic",
                         self.max_reprompts + 1, self.max_reprompts, transcript)


def _proposal(answer: Answer, source: str, attempts: int = 0, reprompts: int = 0,
              transcript: list[dict] | None = None) -> Proposal:
    """``meta``: source (model | heuristic | fallback:heuristic), model calls made, re-prompts, and
    repeated combinations dropped from the answer."""
    return Proposal(answer.strategies if answer.decision == "continue" else [], answer.decision, answer.best,
                    {"source": source, "attempts": attempts, "reprompts": reprompts, "duplicates": answer.duplicates},
                    transcript or [])


class ClientBackend:
    """The shared LLM client as the agent's backend: one chat in, the reply out (cached on disk,
    so a re-run of the same rounds costs nothing)."""

    def __init__(self, client: LLMClient):
        self.client = client

    def complete(self, messages: list[dict], schema: dict | None, seed: int) -> str:
        return self.client.generate([messages], schema=schema, seed=seed)[0]


def build_agent(agent_cfg: Mapping, *, max_strategies: int = 4, min_rounds: int = 2, seed: int = 0,
                allowed_teams: tuple[Team, ...] | list[Team] | None = None, max_teams: int = MAX_TEAMS) -> Agent:
    """An Agent from a conf/agent/*.yaml mapping (a dict or an OmegaConf node); the search limits
    come from the caller's config. ``client`` is an LLM client config of conf/llm's shape (backend,
    model, sampling, the backend's keys), or null for the rule-based agent alone."""
    cfg = dict(agent_cfg)
    client = cfg.pop("client", None)
    structured, max_reprompts = bool(cfg.pop("structured", False)), int(cfg.pop("max_reprompts", 2))
    feedback = cfg.pop("feedback", "paper")
    if feedback not in FEEDBACK:
        raise ValueError(f"agent.feedback must be one of {FEEDBACK}, not {feedback!r}")
    fallback = cfg.pop("fallback", "heuristic")
    if fallback not in ("heuristic", None):
        raise ValueError(f"agent.fallback must be 'heuristic' or null, not {fallback!r}")
    heuristic = HeuristicAgent(**dict(cfg.pop("heuristic", None) or {}))
    if cfg:
        raise ValueError(f"unknown agent keys {sorted(cfg)}; the LLM client's keys go under agent.client")
    backend = None if client is None else ClientBackend(build_client(client))
    return Agent(backend, heuristic=heuristic, structured=structured, max_reprompts=max_reprompts,
                 fallback=fallback is not None, max_strategies=max_strategies, max_teams=max_teams,
                 min_rounds=min_rounds, seed=seed, allowed_teams=allowed_teams or tuple(Team), feedback=feedback)
