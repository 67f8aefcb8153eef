"""Teams are configured operator chains; a strategy runs its teams in order (paper Table 1)."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from autodp.accel.crm import Crm, prefix_keys
from autodp.accel.pts import PTS_TEAMS, Run, run_with_pts
from autodp.data.io import Row
from autodp.ops.base import Operator, OpReport, TeamNotAvailable, build_op, run_op, scale_counts
from autodp.strategy import Strategy, Team

log = logging.getLogger(__name__)


def build_team(team: Team, teams_cfg: Mapping[str, Any], context: dict[str, Any] | None = None) -> list[Operator]:
    specs = list(teams_cfg.get(team.value) or [])
    if not specs:
        raise TeamNotAvailable(f"{team.label} has no operators in conf/teams")
    ops = [build_op(s, context) for s in specs]
    for op in ops:
        if op.team is not team:
            raise ValueError(f"operator {op.name!r} belongs to {op.team.label}, configured under {team.label}")
    return ops


def available_teams(teams_cfg: Mapping[str, Any]) -> list[Team]:
    return [t for t in Team if teams_cfg.get(t.value)]


def scale_teams(teams_cfg: Mapping[str, Any], ratio: float) -> dict[str, Any]:
    """``teams_cfg`` for a sample of ``ratio`` of the data: every operator's ``counts`` scaled."""
    return {team: [scale_counts(s, ratio) for s in specs or []] for team, specs in teams_cfg.items()}


def run_step(op: Operator, rows: list[Row], screener: Any = None, run: Run = run_op) -> tuple[list[Row], OpReport]:
    """One operator of a strategy, with ``run`` (an engine's; by default in this process),
    restricted to the rows F flags when PTS screens its team."""
    return run_with_pts(op, rows, screener, run) if screener is not None and op.team in PTS_TEAMS else run(op, rows)


def log_step(rep: OpReport) -> None:
    log.info("%-24s %5d -> %5d rows, %4d changed, %.2f s", rep.op, rep.rows_in, rep.rows_out, rep.rows_changed,
             rep.seconds)


def _run_team(chain: list[Operator], rows: list[Row], screener: Any, engine: Any) -> tuple[list[Row], list[OpReport]]:
    reports = []
    for op in chain:
        rows, rep = run_step(op, rows, screener, run_op if engine is None else engine.run)
        log_step(rep)
        reports.append(rep)
    return rows, reports


def apply_strategy(strategy: Strategy, rows: list[Row], teams_cfg: Mapping[str, Any],
                   context: dict[str, Any] | None = None, cache: Crm | None = None,
                   engine: Any = None) -> tuple[list[Row], list[OpReport]]:
    """f(D): run every operator of every team in order; fail before any work if a team is missing.

    With a screening model F in ``context["screener"]`` (PTS), the LLM and Selection teams
    process only the rows F flags as noisy; the rest pass through untouched. With a ``cache``
    (CRM), the longest stored prefix of the strategy is loaded instead of run (its reports say
    ``cached``), only the remaining teams run, and the result of each of them is stored for
    later strategies. An ``engine`` (autodp/process) runs each operator; None: in this process."""
    chains = [build_team(t, teams_cfg, context) for t in strategy.teams]
    screener = (context or {}).get("screener")
    done, reports, keys = 0, [], []
    if cache is not None:
        keys = prefix_keys(rows, list(zip(strategy.teams, chains)), screener)
        done, rows, reports = cache.longest_prefix(keys, rows)
        if done:
            log.info("CRM: reusing the processed prefix %s (%d rows) of %s", Strategy(strategy.teams[:done]).key,
                     len(rows), strategy.key)
    for i in range(done, len(chains)):
        rows, team_reports = _run_team(chains[i], rows, screener, engine)
        reports += team_reports
        if cache is not None:
            cache.store(keys[i], rows, reports, Strategy(strategy.teams[:i + 1]).key)
    return rows, reports
