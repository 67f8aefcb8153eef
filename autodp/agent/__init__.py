"""The strategy-generation agent (paper section 3.2). It sees strategies and scores, never data:
nothing here imports a module that loads or processes data."""
from autodp.agent.agent import Agent, AgentError, Backend, build_agent, derive_seed
from autodp.agent.heuristic import HeuristicAgent
from autodp.agent.parser import Answer, ParseError, answer_schema, parse_json, parse_text, validate
from autodp.agent.prompting import format_feedback, render_prompt
# the round vocabulary every search method shares, re-exported for the agent's callers
from autodp.proposal import DECISIONS, Feedback, Proposal, RoundFeedback, Rules

__all__ = ["Agent", "AgentError", "Answer", "Backend", "DECISIONS", "Feedback", "HeuristicAgent", "ParseError",
           "Proposal", "RoundFeedback", "Rules", "answer_schema", "build_agent", "derive_seed", "format_feedback",
           "parse_json", "parse_text", "render_prompt", "validate"]
