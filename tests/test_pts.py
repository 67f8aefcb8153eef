"""Processing-target selection: a real F trained on shipped CMD rows decides which rows an LLM
operator may change; the operator still sees every row (shots, dedup), clean rows pass through
untouched, and the report counts the LLM work F took away. A selector chooses among the flagged
rows only and keeps every clean one."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from autodp.accel.pts import run_with_pts, split_by_f
from autodp.accel.screening import compose, screening_model
from autodp.data.io import Row, load_rows, write_rows
from autodp.data.noise import inject_noise
from autodp.llm import LLMClient
from autodp.ops.base import Operator
from autodp.ops.cleaning import CleanHtml
from autodp.ops.generation import FillMissingAnswer, GenerateQAFromShots
from autodp.ops.llm_op import LLMOperator
from autodp.strategy import Team

from conftest import RAY_ADDRESS, SAMPLES
from test_generation import NEW_A, NEW_Q, Scripted, row

torch.set_num_threads(1)
F_ROWS = 600  # F learns from the first rows; PTS runs on rows after them


class Recording(LLMOperator):
    """Marks the answers of the rows it picks (no model) and remembers which ids it saw and picked."""

    name = "recording"
    team = Team.OPTIMIZATION

    def __init__(self, **kw):
        super().__init__(llm={}, **kw)
        self.seen: list[str] = []
        self.picked: list[str] = []

    def eligible(self, row: Row) -> bool:
        return True

    def __call__(self, rows: list[Row]) -> list[Row]:
        self.seen += [r["id"] for r in rows]
        idx = set(self.pick(rows))
        self.start_stats(len(rows), len(idx))
        self.picked += [rows[i]["id"] for i in sorted(idx)]
        return [{**r, "output": r["output"] + "（已优化）"} if i in idx else r for i, r in enumerate(rows)]


class EveryOther(Operator):
    """A selector that keeps every other row it is given and remembers which ids it saw."""

    name = "every_other"
    team = Team.SELECTION

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, rows: list[Row]) -> list[Row]:
        self.seen += [r["id"] for r in rows]
        return rows[::2]


class Flags:
    """F as a fixed set of ids: for contracts that need a chosen split (the real F is tested above)."""

    def __init__(self, ids):
        self.ids = set(ids)

    def predict(self, rows: list[Row]) -> np.ndarray:
        return np.array([r["id"] in self.ids for r in rows])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A real F on shipped rows, built once and then loaded from the cache (as a search would)."""
    data = tmp_path_factory.mktemp("pts") / "f_rows.jsonl"
    write_rows(data, load_rows(SAMPLES / "cmd" / "train.jsonl", limit=F_ROWS))
    return screening_model(compose([f"screening.data={data}"]))


@pytest.fixture(scope="module")
def rows(cmd_rows):
    """200 rows F never saw, a fifth of them wrapped in HTML (known noise)."""
    return inject_noise(cmd_rows[F_ROWS:F_ROWS + 200], 0.2, seed=11, kinds=("html",))


def test_split_by_f_partitions_the_rows_in_order(model, rows):
    noisy, clean = split_by_f(rows, model)
    flags = model.predict(rows)
    assert noisy == [r["id"] for r, f in zip(rows, flags) if f]
    assert clean == [r["id"] for r, f in zip(rows, flags) if not f]
    assert 0 < len(noisy) < len(rows)
    html = [r["id"] for r in rows if "<div" in r["output"]]
    assert len(html) == 40 and set(html) <= set(noisy)  # F never skips markup


def test_f_screens_rows_on_ray_actors_as_it_does_here(model, rows, tmp_path):
    """process=ray scores an export's rows with a copy of F on each of a pool of Ray actors (each
    loading its own encoder): the same verdicts as here."""
    import pickle

    import ray

    from autodp.data.io import row_line
    from autodp.process.ray_engine import RayEngine

    here = model.predict(rows)
    assert model._encoder is not None and pickle.loads(pickle.dumps(model))._encoder is None  # not shipped
    pipe = RayEngine(address=RAY_ADDRESS, num_cpus=2, batch_size=50, progress=False).pipeline(tmp_path)
    try:
        ds = pipe.ray.data.from_items([{"idx": i, "row": row_line(r)} for i, r in enumerate(rows)])
        assert (pipe.screen(ds, model).predict(rows) == here).all()
    finally:
        ray.shutdown()
    assert 0 < here.sum() < len(rows)


def test_pts_lets_the_operator_change_exactly_the_rows_f_flags(model, rows):
    noisy, clean = split_by_f(rows, model)
    op = Recording()
    out, rep = run_with_pts(op, rows, model)
    assert op.seen == [r["id"] for r in rows]  # it sees every row...
    assert op.picked == noisy  # ...and processes each flagged row once, in order, and no other
    for before, after in zip(rows, out):
        assert (after is before) == (before["id"] in set(clean))
    assert (rep.rows_in, rep.rows_out, rep.rows_changed) == (200, 200, len(noisy))
    assert (rep.rows_processed, rep.rows_skipped) == (len(noisy), len(clean))
    assert rep.seconds_saved_est == pytest.approx(rep.rows_skipped * rep.seconds_per_row, rel=1e-3, abs=1e-4)  # both rounded
    assert rep.screen_seconds > 0


def test_skipped_work_is_counted_after_the_max_rows_cap(rows):
    """With a cap of 10, F taking 150 rows away from 200 leaves 10 calls: PTS saved nothing."""
    _, rep = run_with_pts(Recording(max_rows=10), rows, Flags(r["id"] for r in rows[:50]))
    assert (rep.rows_processed, rep.rows_skipped) == (10, 0)
    _, rep = run_with_pts(Recording(max_rows=10), rows, Flags(r["id"] for r in rows[:4]))
    assert (rep.rows_processed, rep.rows_skipped) == (4, 6)


def test_a_fill_under_pts_takes_its_shots_from_rows_f_calls_clean(cmd_rows):
    clean = cmd_rows[0]
    rows = [clean, row("m1", NEW_Q, ""), row("m2", "头痛怎么办？", "")]
    backend = Scripted("多休息，必要时就医。")
    op = FillMissingAnswer(llm=LLMClient(backend, chat=False), k=1, seed=0)
    out, rep = run_with_pts(op, rows, Flags({"m1"}))  # F flags one of the two missing answers
    assert [r["output"] for r in out] == [clean["output"], "多休息，必要时就医。", ""]
    assert len(backend.requests) == 1 and clean["output"] in backend.requests[0].prompt
    assert (rep.rows_processed, rep.rows_skipped) == (1, 1)


def test_generation_from_shots_is_not_restricted(cmd_rows):
    """New pairs change no row: PTS skips nothing, shots come from every row."""
    rows = cmd_rows[:6]
    backend = Scripted(f"{NEW_Q}\n【回答】{NEW_A}")
    op = GenerateQAFromShots(llm=LLMClient(backend, chat=False), num_new=1, k=6, seed=0)
    out, rep = run_with_pts(op, rows, Flags([]))
    assert out[:6] == rows and out[6]["instruction"] == NEW_Q
    assert sorted(out[6]["meta"]["shots"]) == sorted(r["id"] for r in rows)
    assert (rep.rows_processed, rep.rows_skipped) == (1, 0) and rep.stats["added"] == 1


def test_a_selector_under_pts_chooses_among_flagged_rows_and_keeps_clean_ones(model, rows):
    noisy, clean = split_by_f(rows, model)
    op = EveryOther()
    out, rep = run_with_pts(op, rows, model)
    assert op.seen == noisy  # no clean row is scored
    assert [r["id"] for r in out] == [r["id"] for r in rows if r["id"] in set(clean) | set(noisy[::2])]
    assert all(a is b for a, b in zip(out, (r for r in rows if r["id"] in {x["id"] for x in out})))
    assert (rep.rows_in, rep.rows_out) == (200, len(clean) + len(noisy[::2]))
    assert (rep.rows_processed, rep.rows_skipped) == (len(noisy), len(clean))


def test_cleaning_operators_are_not_screened(model, rows):
    with pytest.raises(TypeError, match="clean_html"):
        run_with_pts(CleanHtml(), rows, model)


def test_nothing_flagged_means_nothing_processed_and_no_estimate(rows):
    op = Recording()
    out, rep = run_with_pts(op, rows[:5], Flags([]))
    assert op.picked == [] and out == rows[:5]
    assert rep.rows_skipped == 5 and rep.seconds_per_row is None and rep.seconds_saved_est is None


def test_pts_logs_counts_never_text(model, rows, caplog):
    with caplog.at_level(logging.INFO, logger="autodp.accel.pts"):
        run_with_pts(Recording(), rows, model)
    text = caplog.text
    assert "skipped as clean" in text
    assert not any(r["output"][:8] in text or r["instruction"][:8] in text for r in rows)
