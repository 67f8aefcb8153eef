"""Processing-target selection: a real F trained on shipped CMD rows decides which rows an
operator sees; clean rows pass through untouched and the report counts what was skipped."""
from __future__ import annotations

import logging

import pytest
import torch

from autodp.accel.pts import apply_with_pts, merge, run_with_pts, split_by_f
from autodp.accel.screening import compose, screening_model
from autodp.data.io import Row, load_rows, write_rows
from autodp.data.noise import inject_noise
from autodp.ops.base import Operator
from autodp.ops.cleaning import CleanHtml
from autodp.strategy import Team

from conftest import SAMPLES

torch.set_num_threads(1)
F_ROWS = 600  # F learns from the first rows; PTS runs on rows after them


class Recording(Operator):
    """Returns its rows unchanged and remembers which ids it was given."""

    name = "recording"
    team = Team.OPTIMIZATION

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, rows: list[Row]) -> list[Row]:
        self.seen += [r["id"] for r in rows]
        return rows


class DropAndGenerate(Operator):
    """Drops every second row it is given, rewrites the rest and adds one new row per kept row."""

    name = "drop_and_generate"
    team = Team.GENERATION

    def __call__(self, rows: list[Row]) -> list[Row]:
        kept = [{**r, "output": r["output"] + "（已优化）"} for r in rows[::2]]
        return kept + [{**r, "id": r["id"] + "-gen"} for r in kept]


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


def test_pts_passes_the_operator_exactly_the_rows_f_flags(model, rows):
    noisy, clean = split_by_f(rows, model)
    op = Recording()
    out, rep = apply_with_pts(op, rows, noisy)
    assert op.seen == noisy  # each flagged row once, in order; no row F calls clean
    assert out == rows
    assert (rep.rows_in, rep.rows_out, rep.rows_processed, rep.rows_skipped) == (200, 200, len(noisy), len(clean))
    assert rep.seconds_saved_est == pytest.approx(rep.rows_skipped * rep.seconds_per_row, rel=1e-3, abs=1e-6)


def test_clean_html_under_pts_cleans_flagged_rows_and_leaves_the_rest_untouched(model, rows):
    noisy, _ = split_by_f(rows, model)
    flagged = set(noisy)
    out, rep = run_with_pts(CleanHtml(), rows, model)
    assert [r["id"] for r in out] == [r["id"] for r in rows]  # a mapper keeps order
    cleaned = dict(zip(noisy, CleanHtml()([r for r in rows if r["id"] in flagged])))
    for before, after in zip(rows, out):
        if before["id"] in flagged:
            assert after == cleaned[before["id"]]
        else:
            assert after is before  # passed through, not even copied
    assert not any("<div" in r["output"] for r in out)
    assert rep.op == "clean_html" and rep.rows_skipped == len(rows) - len(flagged)
    assert rep.rows_changed >= 40 and rep.screen_seconds > 0 and rep.seconds_saved_est is not None


def test_filters_drop_and_generators_append_only_among_flagged_rows(rows):
    noisy = [r["id"] for r in rows[::3]]
    out, rep = apply_with_pts(DropAndGenerate(), rows, noisy)
    kept = noisy[::2]
    expect = [r["id"] for r in rows if r["id"] not in set(noisy) or r["id"] in set(kept)]
    assert [r["id"] for r in out] == expect + [i + "-gen" for i in kept]
    by_id = {r["id"]: r for r in out}
    assert all(by_id[i]["output"].endswith("（已优化）") for i in kept)
    assert all(by_id[r["id"]] is r for r in rows if r["id"] not in set(noisy))
    assert (rep.rows_in, rep.rows_out, rep.rows_processed) == (len(rows), len(out), len(noisy))
    assert rep.as_dict()["rows_skipped"] == len(rows) - len(noisy)


def test_an_operator_may_not_return_rows_it_was_not_given(rows):
    with pytest.raises(ValueError, match="was not given"):
        merge(rows[:3], {rows[0]["id"]}, [rows[1]])
    with pytest.raises(ValueError, match="not among the rows"):
        apply_with_pts(Recording(), rows[:3], ["nope"])


def test_nothing_flagged_means_nothing_processed_and_no_estimate(rows):
    op = Recording()
    out, rep = apply_with_pts(op, rows[:5], [])
    assert op.seen == [] and out == rows[:5]
    assert rep.rows_skipped == 5 and rep.seconds_per_row is None and rep.seconds_saved_est is None


def test_pts_logs_counts_never_text(model, rows, caplog):
    with caplog.at_level(logging.INFO, logger="autodp.accel.pts"):
        run_with_pts(Recording(), rows, model)
    text = caplog.text
    assert "skipped as clean" in text
    assert not any(r["output"][:8] in text or r["instruction"][:8] in text for r in rows)

