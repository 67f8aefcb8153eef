"""SELA-style Monte Carlo tree search over strategies: the paper's SELA baseline (section 4.1.2;
SELA is Chi et al. 2024, arXiv 2410.17238, code in MetaGPT's metagpt/ext/sela).

Taken from SELA's code (search/tree_search.py and search/search_algorithm.py there), as ideas:
- the root is the starting pipeline (here no processing, already scored as r_0) and a child
  extends its parent by one stage (here: appends one team the strategy does not hold yet);
- selection is the arg-max UCT over every node of the tree, not a descent from the root:
  UCT = mean reward + c * sqrt(ln(parent's visits) / n), where an unvisited node counts as
  ``c_unvisited`` visits (SELA: c = 1.4, c_unvisited = 0.8);
- a selected node already visited is expanded (at most ``max_children`` children, proposed by
  an LLM in SELA) and one of its new children, drawn at random, is simulated; the reward goes to
  that node and to every ancestor (backpropagation);
- rewards are normalised so that higher is better, in [0, 1]; a failed run gets the worst one;
- the result is the node with the best validation score in the whole tree (SELA's "dev_best").
Different here: a simulation is one evaluation of the node's own strategy (every node is a
complete strategy, there is nothing to roll out); a node with nothing left to learn (evaluated,
and expanded or unable to grow) is not selected again, where SELA would spend a rollout
re-scoring it from its cache; and the tree is not pickled but rebuilt each round from the
journaled history (each round's meta names the node expanded and its children), which is how the
loop resumes every method.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Sequence

from autodp.proposal import Proposal, RoundFeedback
from autodp.search.proposer import Context, Proposer
from autodp.strategy import Strategy

EXPANSIONS = ("llm", "uniform")


@dataclass
class Node:
    strategy: Strategy
    children: list[Strategy] = field(default_factory=list)
    expanded: bool = False
    score: float | None = None  # s of its own evaluation, once evaluated
    evaluated: bool = False
    visits: int = 0  # evaluations in its subtree, its own included
    value: float = 0.0  # sum of their rewards

    @property
    def parent(self) -> Strategy:
        return Strategy(self.strategy.teams[:-1])


def _reward(score: float | None, lo: float, hi: float) -> float:
    """s scaled to [0, 1] over the scores in the tree (the exploration term's scale does not depend
    on the data set's); a failed evaluation gets the worst reward."""
    if score is None:
        return 0.0
    return (score - lo) / (hi - lo) if hi > lo else 0.5


class Tree:
    """The search tree as the history left it: nodes by strategy, root = no processing."""

    def __init__(self, history: Sequence[RoundFeedback]):
        root = Strategy(())
        # r_0 is evaluated before any round, and s = r_0 - r_0 = 0
        self.nodes: dict[Strategy, Node] = {root: Node(root, evaluated=True, score=0.0)}
        order: list[Strategy] = [root]
        for r in history:
            if "expanded" in r.meta:
                node = self.nodes[Strategy.parse(r.meta["expanded"])]
                node.expanded, node.children = True, [Strategy.parse(k) for k in r.meta["children"]]
                self.nodes.update((c, Node(c)) for c in node.children)
            for f in r.results:
                node = self.nodes[f.strategy]
                node.evaluated, node.score = True, f.score
                order.append(f.strategy)
        scores = [n.score for n in self.nodes.values() if n.score is not None]
        lo, hi = min(scores), max(scores)
        for s in order:  # backpropagation, in the order the evaluations came in
            reward = _reward(self.nodes[s].score, lo, hi)
            for a in [s, *s.prefixes(), *([root] if s != root else [])]:
                self.nodes[a].visits += 1
                self.nodes[a].value += reward

    def uct(self, node: Node, c: float, c_unvisited: float) -> float:
        n = node.visits or c_unvisited
        return node.value / n + c * math.sqrt(math.log(self.nodes[node.parent].visits) / n)

    def best(self) -> Strategy:
        """The top score in the tree, the root's 0 included; the first evaluated on ties."""
        return max((n for n in self.nodes.values() if n.score is not None), key=lambda n: n.score).strategy


class MCTS:
    def __init__(self, ctx: Context, c: float = 1.4, c_unvisited: float = 0.8, max_children: int = 4,
                 expansion: str = "llm"):
        if expansion not in EXPANSIONS:
            raise ValueError(f"search.proposer.expansion must be one of {EXPANSIONS}, not {expansion!r}")
        self.teams, self.seed = ctx.teams, ctx.seed
        self.c, self.c_unvisited, self.max_children = c, c_unvisited, max_children
        self.agent: Proposer | None = ctx.agent() if expansion == "llm" else None

    def _growable(self, s: Strategy) -> list[Strategy]:
        return [Strategy(s.teams + (t,)) for t in self.teams if t not in s.teams]

    def _open(self, tree: Tree, node: Node) -> bool:
        """Something is left to learn at or below ``node``: an evaluation or an expansion."""
        if not node.evaluated or (not node.expanded and self._growable(node.strategy)):
            return True
        return any(self._open(tree, tree.nodes[c]) for c in node.children)

    def propose(self, round: int, history: Sequence[RoundFeedback], note: str | None = None) -> Proposal:
        tree = Tree(history)
        root = tree.nodes[Strategy(())]
        rng = random.Random(f"{self.seed}/{round}")
        if not root.expanded:  # SELA's first rollouts: the root is scored (r_0), then expanded
            node = root
        else:
            candidates = [n for n in tree.nodes.values() if not n.strategy.is_none and self._open(tree, n)]
            if not candidates:
                best = tree.best()
                return Proposal([], "no_processing", best) if best.is_none else Proposal([], "best_team", best)
            # max() keeps the first of equal UCTs: the tree's insertion order
            node = max(candidates, key=lambda n: tree.uct(n, self.c, self.c_unvisited))
            # SELA's simulation walks from the selected node to a random leaf; here it walks down
            # through children with something left to learn, so nothing finished is run again
            while node.evaluated and node.expanded:
                node = tree.nodes[rng.choice([c for c in node.children if self._open(tree, tree.nodes[c])])]
            if not node.evaluated:
                return Proposal([node.strategy], "continue", None, {"node": node.strategy.key})
        children, transcript, meta = self._expand(node.strategy, round, history)
        child = rng.choice(children)
        return Proposal([child], "continue", None, {"node": child.key, "expanded": node.strategy.key,
                                                    "children": [c.key for c in children], **meta}, transcript)

    def _expand(self, s: Strategy, round: int,
                history: Sequence[RoundFeedback]) -> tuple[list[Strategy], list[dict], dict]:
        """The children of ``s``: those the agent proposes, else every possible one in random order."""
        possible = self._growable(s)
        transcript, meta = [], {"expansion": "uniform"}
        if self.agent is not None:
            note = ("Propose single teams, one team per combination." if s.is_none else
                    f"Extend the combination '{s.label}' by exactly one more team at its end: propose only "
                    f"combinations of its teams, in its order, followed by one other team.")
            p = self.agent.propose(round, list(history), note)
            transcript, meta = p.transcript, {**p.meta, "expansion": "llm"}
            chosen = [c for c in p.strategies if c in possible][:self.max_children]
            if chosen:
                return chosen, transcript, meta
            meta["expansion"] = "uniform (no usable child from the agent)"
        order = random.Random(f"{self.seed}/{round}/expand").sample(possible, len(possible))
        return order[:self.max_children], transcript, meta
