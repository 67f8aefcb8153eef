"""The strategy-generation agent: parser, schema, prompts, heuristic, the agent loop, backends."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from autodp.agent import (Agent, AgentError, HeuristicAgent, ParseError, RoundFeedback, Rules, answer_schema,
                          build_agent, derive_seed, parse_json, parse_text, render_prompt)
from autodp.strategy import Strategy, Team, strategy_space

CONF = Path(__file__).resolve().parents[1] / "conf"


def agent_config(name: str):
    """conf/agent/<name>.yaml as a run composes it (the LLM agents extend heuristic.yaml)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"agent={name}"]).agent
S = Strategy.parse
C, CG, CO, CS = S("cleaning"), S("cleaning>generation"), S("cleaning>optimization"), S("cleaning>selection")

# appendix 6.1, "Example of Combinations"
PAPER_EXAMPLE = """###Combination[1]###

- Data Cleaning Team

###Combination[2]###

- Data Cleaning Team, Data Generation Team
"""

# section 6.3, round 2, written in the free format (the reasons name teams that are no combination)
PAPER_ROUND2 = """###Combination[1]###
- Data Cleaning, Data Optimization, Data Selection

###Combination[2]###
- Data Cleaning, Data Generation, Data Optimization

###Combination[3]###
- Data Cleaning, Data Optimization

###Reasons for Different Combinations###
- Based on the outstanding performance of the Data Optimization Team in the first round, this
  combination adds the Data Selection Team to concentrate on high-quality samples.
- Data Generation Team, Data Generation Team
"""

ROUND1 = RoundFeedback(1, [(C, 0.0264), (CG, 0.0955), (CO, 0.6784), (CS, 0.0201)])


def keys(strategies: list[Strategy]) -> list[str]:
    return [s.key for s in strategies]


# --- free format ---------------------------------------------------------------------------

def test_parser_accepts_the_paper_examples():
    a = parse_text(PAPER_EXAMPLE, Rules(can_stop=False))
    assert (keys(a.strategies), a.decision, a.best) == (["cleaning", "cleaning>generation"], "continue", None)
    a = parse_text(PAPER_ROUND2, Rules())
    assert keys(a.strategies) == ["cleaning>optimization>selection", "cleaning>generation>optimization",
                                  "cleaning>optimization"]


@pytest.mark.parametrize("text", [
    "**###Combination【1】###**\n- **Data Cleaning Team**，**Data Optimization Team**\n\n"
    "**###Combination【2】###**\n-   Data Selection Team  \n",
    "1.###Combination[1]###\n- Data Cleaning Team → Data Optimization Team\n"
    "2.### Combination [2] ###\n* Data Selection Team.\n",
    "### Combination 1 ###\n1. Data Cleaning -> Data Optimization\n\n\n### Combination 2: Data Selection Team\n",
    "<think>Combination[9]: Data Generation Team</think>\n###Combination[1]###\n- data cleaning team, data "
    "optimization team (fix the answers after cleaning)\n###Combination[2]###\n- Data Selection Team\n",
])
def test_parser_tolerates_formatting_variants(text):
    assert keys(parse_text(text, Rules()).strategies) == ["cleaning>optimization", "selection"]


@pytest.mark.parametrize("text", [
    "###Combination[1]### **【Best Team】**\n- Data Cleaning Team, Data Optimization Team\n"
    "###Combination[2]###\n- Data Cleaning Team\n",
    "###Combination[1]###\n- Data Cleaning Team\n###Combination[2]###\n"
    "- Data Cleaning Team, Data Optimization Team **【Best Team】**\n",
    "**【Best Team】**\n###Combination[1]###\n- Data Cleaning Team，Data Optimization Team\n",
    "No further adjustments are needed.\n\n**【Best Team】**: Data Cleaning Team, Data Optimization Team\n",
])
def test_parser_reads_best_team(text):
    a = parse_text(text, Rules(evaluated=frozenset({C, CO})))
    assert (a.decision, a.best) == ("best_team", CO)


def test_parser_reads_no_processing():
    text = "All scores stay close to zero.\n\n**【No Processing Required for Original Data】**\n"
    a = parse_text(text, Rules())
    assert (a.decision, a.best, a.strategies) == ("no_processing", Strategy(()), [])


@pytest.mark.parametrize("text, rules, message", [
    ("I would clean the data first and then select the best rows.", Rules(), "no ###Combination[k]### block"),
    ("###Combination[1]###\n- Data Labeling Team\n", Rules(), "Combination[1]: unknown team 'Data Labeling Team'"),
    ("###Combination[1]###\n- Data Cleaning Team, Data Cleaning Team\n", Rules(), "Combination[1]: duplicate team"),
    ("###Combination[1]###\n- Data Cleaning Team, Data Generation Team, Data Optimization Team, "
     "Data Selection Team, Data Cleaning Team\n", Rules(), "Combination[1] has 5 teams; at most 4"),
    ("".join(f"###Combination[{i}]###\n- {t.label}\n" for i, t in enumerate(Team, 1))
     + "###Combination[5]###\n- Data Cleaning Team, Data Selection Team\n", Rules(),
     "5 combinations given; at most 4 are allowed per round"),
    ("###Combination[1]###\n\n###Combination[2]###\n- Data Cleaning Team\n", Rules(), "Combination[1] lists no team"),
    ("###Combination[1]###\n- Data Generation Team\n", Rules(teams=(Team.CLEANING, Team.SELECTION)),
     "uses Data Generation Team, which is not available"),
    ("###Combination[1]### [Best Team]\n- Data Cleaning Team\n", Rules(can_stop=False), "too early to stop"),
    ("###Combination[1]### [Best Team]\n- Data Selection Team\n", Rules(evaluated=frozenset({C})),
     "'Data Selection Team' has no feedback score yet"),
    ("###Combination[1]### [Best Team]\n- Data Cleaning Team\n###Combination[2]### [Best Team]\n- Data Selection Team\n",
     Rules(), "2 combinations are marked [Best Team]"),
])
def test_parser_rejects_malformed_answers(text, rules, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_text(text, rules)


ANSWERS = OmegaConf.to_container(OmegaConf.load(Path(__file__).parent / "data" / "agent_answers.yaml"))


@pytest.mark.parametrize("answer", ANSWERS, ids=[f"{i}-{a['family']}" for i, a in enumerate(ANSWERS)])
def test_parser_reads_answers_of_several_model_families(answer):
    evaluated = answer.get("evaluated")
    rules = Rules(can_stop=answer.get("can_stop", True),
                  evaluated=None if evaluated is None else frozenset(map(S, evaluated)))
    a = parse_text(answer["text"], rules)
    assert keys(a.strategies) == answer["strategies"]
    assert a.decision == answer["decision"]
    assert (a.best.key if a.best else None) == answer.get("best")


def test_parser_drops_and_counts_repeated_combinations():
    text = PAPER_EXAMPLE + "###Combination[3]###\n- Data Cleaning Team\n###Combination[4]###\n- Data Cleaning Team\n"
    a = parse_text(text, Rules(max_strategies=2))
    assert (keys(a.strategies), a.duplicates) == (["cleaning", "cleaning>generation"], 2)


# --- JSON and its schema -------------------------------------------------------------------

def test_json_answers():
    a = parse_json('Sure: {"combinations": ["Data Cleaning Team, Data Optimization Team", "Data Selection Team",'
                   ' "Data Selection Team"], "decision": "continue"}', Rules())
    assert (keys(a.strategies), a.decision, a.duplicates) == (["cleaning>optimization", "selection"], "continue", 1)
    a = parse_json('{"combinations": ["Data Cleaning Team, Data Optimization Team", "Data Cleaning Team"],'
                   ' "decision": "best_team"}', Rules(evaluated=frozenset({C, CO})))
    assert (a.decision, a.best) == ("best_team", CO)
    a = parse_json('{"combinations": [], "decision": "no_processing"}', Rules())
    assert (a.decision, a.best) == ("no_processing", Strategy(()))


@pytest.mark.parametrize("text, rules, message", [
    ("no json here", Rules(), "no JSON object found"),
    ('{"combinations": ["Data Cleaning Team",], "decision": "continue"}', Rules(), "invalid JSON"),
    ('{"combinations": "Data Cleaning Team", "decision": "continue"}', Rules(), '"combinations" must be a list'),
    ('{"combinations": ["Data Cleaning Team"], "decision": "stop"}', Rules(), "decision must be one of"),
    ('{"combinations": ["Data Wrangling Team"], "decision": "continue"}', Rules(), "unknown team"),
    ('{"combinations": ["No Processing Required for Original Data"], "decision": "continue"}', Rules(),
     "is not a combination of teams"),
    ('{"combinations": [], "decision": "continue"}', Rules(), "no combination given"),
    ('{"combinations": ["Data Cleaning Team"], "decision": "best_team"}', Rules(can_stop=False), "too early"),
])
def test_json_rejects(text, rules, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_json(text, rules)


def test_schema_enumerates_exactly_the_valid_strategies():
    schema = answer_schema(Rules(max_strategies=4, can_stop=True))
    items = schema["properties"]["combinations"]
    labels = items["items"]["enum"]
    assert len(labels) == 64 and {S(x) for x in labels} == {s for s in strategy_space() if not s.is_none}
    assert (items["minItems"], items["maxItems"]) == (1, 4)
    assert schema["properties"]["decision"]["enum"] == ["continue", "best_team", "no_processing"]
    small = answer_schema(Rules(teams=(Team.CLEANING, Team.SELECTION), max_strategies=3, max_teams=1, can_stop=False))
    assert small["properties"]["combinations"]["items"]["enum"] == ["Data Cleaning Team", "Data Selection Team"]
    assert small["properties"]["combinations"]["maxItems"] == 3
    assert small["properties"]["decision"]["enum"] == ["continue"]
    assert len(json.dumps(schema)) < 6000  # lm-format-enforcer walks it per token: keep it small


# --- prompts -------------------------------------------------------------------------------

def test_initial_prompt_is_the_papers():
    p = render_prompt(1, [], Rules(can_stop=False), structured=False)
    for text in ['this must be done in "black-box mode"', "### Team Capability Overview:",
                 "Initialize multiple different team combinations (no more than four)",
                 "###Combination[2]###\n\n- Data Cleaning Team, Data Generation Team",
                 "###Reasons for Different Combinations###", "Round 1:\n\nNow, proceed with the first step"]:
        assert text in p
    assert "$" not in p and "Feedback Score" not in p


def test_iterative_prompt_holds_the_whole_history():
    history = [ROUND1, RoundFeedback(2, [(S("cleaning>optimization>selection"), -0.0123),
                                         (S("selection>cleaning"), None, "out of memory")])]
    p = render_prompt(3, history, Rules(can_stop=True), structured=True)
    for text in ["Round 2 (Iterative Optimization)", "**【Best Team】**", "in Rounds 1-2 are as follows",
                 "Round 1:\n\n1.###Combination[1]###\n- Data Cleaning Team\nFeedback Score: 0.0264",
                 "3.###Combination[3]###\n- Data Cleaning Team, Data Optimization Team\nFeedback Score: 0.6784",
                 "- Data Cleaning Team, Data Optimization Team, Data Selection Team\nFeedback Score: -0.0123",
                 "- Data Selection Team, Data Cleaning Team\nFeedback Score: failed: out of memory",
                 '"best_team" to stop', "### Round 3:\n\nNow, proceed with Step 3,"]:
        assert text in p
    assert p.count("Feedback Score:") == 6
    assert "$" not in p
    early = render_prompt(2, [ROUND1], Rules(can_stop=False), structured=True)
    assert '"decision": "continue" (it is too early' in early and "in Round 1 are" in early


# --- heuristic -----------------------------------------------------------------------------

def fake_score(s: Strategy) -> float:
    """A made-up landscape: optimization helps, more so after cleaning; generation hurts."""
    w = {Team.CLEANING: 0.02, Team.OPTIMIZATION: 0.5, Team.SELECTION: 0.05, Team.GENERATION: -0.1}
    bonus = 0.1 if s.teams[:2] == (Team.CLEANING, Team.OPTIMIZATION) else 0.0
    return sum(w[t] for t in s.teams) + bonus


def run_search(agent: Agent, score=fake_score, max_rounds: int = 10):
    history, proposals = [], []
    for r in range(1, max_rounds + 1):
        p = agent.propose(r, history)
        proposals.append(p)
        if p.stop:
            break
        history.append(RoundFeedback(r, [(s, score(s)) for s in p.strategies]))
    return history, proposals


def test_heuristic_round1_is_the_papers_example():
    a = HeuristicAgent().answer(1, [], Rules(can_stop=False))
    assert a.strategies == [C, CG, CO, CS] and a.decision == "continue"


def test_heuristic_never_repeats_and_stops_when_stalled():
    agent = Agent(None, heuristic=HeuristicAgent(patience=2), min_rounds=3)
    history, proposals = run_search(agent)
    proposed = [s for p in proposals for s in p.strategies]
    assert len(proposed) == len(set(proposed))
    assert all(1 <= len(p.strategies) <= 4 for p in proposals[:-1])
    last = proposals[-1]
    scored = {f.strategy: f.score for r in history for f in r.results}
    assert last.decision == "best_team" and last.best == max(scored, key=scored.get)
    assert last.meta["source"] == "heuristic" and last.strategies == []
    # stalled: the best of the last two rounds is no better than what came before
    best = [max(f.score for f in r.results) for r in history]
    assert max(best[-2:]) <= max(best[:-2])
    assert run_search(agent)[0] == history  # deterministic


def test_heuristic_no_processing_and_min_rounds():
    agent = Agent(None, heuristic=HeuristicAgent(epsilon=0.01), min_rounds=4)
    history, proposals = run_search(agent, score=lambda s: 0.003)
    assert [p.decision for p in proposals] == ["continue"] * 3 + ["no_processing"]
    assert proposals[-1].best == Strategy(())
    # everything hurts: the best is below epsilon, so the raw data wins
    _, proposals = run_search(Agent(None, min_rounds=2), score=lambda s: -0.2 - 0.01 * len(s.teams))
    assert proposals[-1].decision == "no_processing"


def test_heuristic_respects_allowed_teams_and_exhausts_the_space():
    agent = Agent(None, allowed_teams=[Team.SELECTION, Team.CLEANING], min_rounds=99)
    _, proposals = run_search(agent, score=lambda s: len(s.teams) / 10)
    proposed = {s for p in proposals for s in p.strategies}
    assert proposed == {s for s in strategy_space((Team.CLEANING, Team.SELECTION)) if not s.is_none}
    assert proposals[-1].decision == "best_team"  # nothing left to try ends the search


# --- the agent loop ------------------------------------------------------------------------

class ScriptedBackend:
    """Stands in for the model: replays fixed answers and records what it was asked."""

    def __init__(self, *answers: str):
        self.answers, self.calls = list(answers), []

    def complete(self, messages: list[dict], schema: dict | None, seed: int) -> str:
        self.calls.append((messages, schema, seed))
        return self.answers.pop(0)


def test_agent_reprompts_then_falls_back():
    backend = ScriptedBackend("no idea", "###Combination[1]###\n- Data Magic Team\n", "still nothing")
    agent = Agent(backend, max_reprompts=2, seed=7)
    p = agent.propose(1, [])
    assert (p.meta["source"], p.meta["attempts"], p.meta["reprompts"]) == ("fallback:heuristic", 3, 2)
    assert p.strategies == [C, CG, CO, CS]
    assert [t["attempt"] for t in p.transcript] == [0, 1, 2] and all(t["error"] for t in p.transcript)
    json.dumps(p.transcript)
    messages = backend.calls[2][0]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[3]["content"] == "###Combination[1]###\n- Data Magic Team\n"
    assert messages[4]["content"].startswith("Your answer could not be used: Combination[1]: unknown team 'Data Magic")
    assert messages[4]["content"].endswith(". Answer again in the required format.")
    assert [c[2] for c in backend.calls] == [derive_seed(7, 1, a) for a in range(3)]
    assert len({c[2] for c in backend.calls}) == 3


def test_agent_accepts_a_corrected_answer():
    backend = ScriptedBackend("###Combination[1]### [Best Team]\n- Data Cleaning Team\n", PAPER_EXAMPLE)
    p = Agent(backend, min_rounds=3).propose(2, [ROUND1])
    assert (p.meta["source"], p.meta["attempts"], p.meta["reprompts"], p.strategies) == ("model", 2, 1, [C, CG])
    assert "too early to stop" in p.transcript[0]["error"] and p.transcript[1]["error"] is None


def test_agent_structured_stop_and_no_fallback():
    answer = '{"combinations": ["Data Cleaning Team, Data Optimization Team"], "decision": "best_team"}'
    backend = ScriptedBackend(answer)
    p = Agent(backend, structured=True, min_rounds=2).propose(2, [ROUND1])
    assert (p.decision, p.best, p.strategies, p.stop) == ("best_team", CO, [], True)
    assert backend.calls[0][1] == answer_schema(Agent(None, min_rounds=2).rules(2, [ROUND1]))
    with pytest.raises(AgentError, match="no usable answer in 2 attempts"):
        Agent(ScriptedBackend("x", "y"), max_reprompts=1, fallback=False).propose(1, [])


def test_agent_package_imports_no_data_code():
    code = ("import sys, autodp.agent, autodp.llm.openai_backend; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'datasets' "
            "or m.startswith(('autodp.data', 'autodp.ops', 'autodp.evaluate'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    allowed = ("autodp.agent", "autodp.strategy", "autodp.proposal", "autodp.llm", "__future__")
    for path in (Path(__file__).resolve().parents[1] / "autodp" / "agent").glob("*.py"):
        for mod in re.findall(r"^\s*(?:from|import)\s+([\w.]+)", path.read_text(), re.M):
            assert mod.split(".")[0] in sys.stdlib_module_names or mod.startswith(allowed), (path.name, mod)


# --- configs and backends ------------------------------------------------------------------

def test_agent_configs_build():
    for name in ("heuristic", "smollm2", "transformers", "openai"):
        cfg = agent_config(name)
        assert {"client", "feedback", "structured", "max_reprompts", "fallback", "heuristic"} == set(cfg)
        assert (cfg.client is None) == (name == "heuristic")
    agent = build_agent(agent_config("heuristic"), max_strategies=3, min_rounds=3, seed=1,
                        allowed_teams=["cleaning", "selection"])
    assert agent.backend is None and agent.teams == (Team.CLEANING, Team.SELECTION) and agent.max_strategies == 3
    agent = build_agent(agent_config("openai"))  # builds a client, connects to nothing
    assert agent.structured and agent.backend.client.model == "Qwen/Qwen3-32B"
    with pytest.raises(Exception, match="model"):
        build_agent(agent_config("transformers"))  # model: ??? must be set


class _ChatServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that fails once with 503, then answers."""
    bodies: list[dict] = []

    def do_POST(self):
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        if len(self.bodies) == 1:
            self.send_response(503)
            self.end_headers()
            return
        content = '{"combinations": ["Data Cleaning Team"], "decision": "continue"}'
        reply = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_openai_backend_retries_and_sends_the_schema():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = dict(agent_config("openai"))
        cfg["client"] = {**cfg["client"], "base_url": f"http://127.0.0.1:{server.server_port}/v1", "model": "m",
                         "retries": 1, "backoff": 0.01, "cache": False}
        p = build_agent(cfg, seed=3).propose(1, [])
    finally:
        server.shutdown()
    assert (p.meta["source"], p.strategies) == ("model", [C])
    first, second = _ChatServer.bodies
    assert first == second and second["seed"] == derive_seed(3, 1, 0)
    assert (second["temperature"], second["top_p"]) == (0.6, 0.95)
    fmt = second["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "response"
    assert fmt["json_schema"]["schema"]["properties"]["decision"]["enum"] == ["continue"]


@pytest.mark.slow
def test_smollm2_structured_proposals():
    """The real SmolLM2-135M through the transformers backend, constrained by the JSON schema."""
    t0 = time.perf_counter()
    agent = build_agent(agent_config("smollm2"), min_rounds=3, seed=0)
    backend = agent.backend.client.backend
    print(f"\nSmolLM2 load (incl. any GGUF conversion): {time.perf_counter() - t0:.1f} s")
    for rnd, history in ((1, []), (2, [ROUND1])):
        messages = [{"role": "user", "content": render_prompt(rnd, history, agent.rules(rnd, history), True)}]
        n = len(backend.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])
        t0 = time.perf_counter()
        p = agent.propose(rnd, history)
        print(f"round {rnd}: prompt {n} tokens, {time.perf_counter() - t0:.1f} s, "
              f"{keys(p.strategies)}, response {p.transcript[-1]['response']!r}")
        assert n < 2048
        assert (p.meta["source"], p.decision, p.meta["attempts"]) == ("model", "continue", 1)
        assert 1 <= len(p.strategies) <= 4 and all(not s.is_none for s in p.strategies)
