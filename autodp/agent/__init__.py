"""The strategy-generation agent (paper section 3.2). It sees strategies and scores, never data:
nothing here imports a module that loads or processes data."""
from autodp.agent.agent import Agent, AgentError, Backend, Proposal, build_agent, derive_seed
from autodp.agent.feedback import Feedback, RoundFeedback
from autodp.agent.heuristic import HeuristicAgent
from autodp.agent.parser import DECISIONS, Answer, ParseError, Rules, answer_schema, parse_json, parse_text, validate
from autodp.agent.prompting import format_feedback, render_prompt

__all__ = ["Agent", "AgentError", "Answer", "Backend", "DECISIONS", "Feedback", "HeuristicAgent", "ParseError",
           "Proposal", "RoundFeedback", "Rules", "answer_schema", "build_agent", "derive_seed", "format_feedback",
           "parse_json", "parse_text", "render_prompt", "validate"]
