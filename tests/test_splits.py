"""The held-out test split and the hold-outs: disjoint shipped splits, nothing fitted on a
validation or test row, a search that never opens the test split, and dataset=cmd_noisy."""
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import autodp.run
from autodp.accel import screening as S
from autodp.data.io import DataError, load_rows, load_spec, write_rows
from autodp.data.noise import noisy_dataset, write_noisy_dataset
from autodp.data.specs import data_specs, heldout_test_spec, pinned, question_key, train_rows
from autodp.resources import resolve_path
from conftest import ROOT, SAMPLES

HELD_OUT = "留出标记-9c41e"  # planted in validation and test rows
UNUSED = "未用标记-52d7a"  # planted in training rows past train_limit


def marked(rows: list[dict], marker: str) -> list[dict]:
    return [dict(r, instruction=f"{marker}{r['instruction']}", output=f"{r['output']}{marker}") for r in rows]


def seen(rows: list[dict], marker: str) -> int:
    return sum(marker in r["instruction"] or marker in r["output"] for r in rows)


def test_shipped_cmd_splits_share_no_question(cmd_rows, val_rows):
    test = load_rows(SAMPLES / "cmd" / "test.jsonl")
    assert len(cmd_rows) == 2000 and len(test) == 300
    keys = {name: {question_key(r) for r in rows}
            for name, rows in (("train", cmd_rows), ("val", val_rows), ("test", test))}
    assert len(keys["test"]) == 300  # no question repeats inside the test split either
    assert not keys["train"] & keys["test"] and not keys["val"] & keys["test"] and not keys["train"] & keys["val"]


def test_question_key_ignores_whitespace():
    assert question_key({"instruction": "头痛 怎么办？\n发烧"}) == question_key({"instruction": "头痛怎么办？发烧 "})


@pytest.mark.parametrize("dataset", sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml")))
def test_every_shipped_dataset_has_a_disjoint_test_split(dataset, tmp_path):
    cfg = S.compose([f"dataset={dataset}"])
    data_specs(cfg, tmp_path)
    spec = heldout_test_spec(cfg, tmp_path)  # raises when a test question is a train or val one
    assert spec is not None and len(load_spec(spec)) >= 100


def test_cmd_test_split_is_the_shipped_file():
    cfg = S.compose(["dataset=cmd"])
    assert heldout_test_spec(cfg, Path("unused")) == pinned({"path": "pkg:autodp/data/samples/cmd/test.jsonl",
                                                             "offset": 0, "limit": None})


def test_cmedqa2_is_cut_train_test_val(tmp_path, val_rows):
    cfg = S.compose(["dataset=cmedqa2"])
    specs = data_specs(cfg, tmp_path)
    assert not (tmp_path / "test.jsonl").exists()  # the search's specs never write the test split
    spec = heldout_test_spec(cfg, tmp_path)
    train, test, val = load_spec(specs.pool), load_spec(spec), load_rows(specs.val["path"])
    assert (len(train), len(test), len(val)) == (200, 100, 98)
    assert [r["id"] for r in train + test + val] == [r["id"] for r in val_rows]
    assert train_rows(cfg) == train


def test_a_test_question_in_train_is_rejected(tmp_path, cmd_rows):
    test = load_rows(SAMPLES / "cmd" / "test.jsonl", limit=5)
    # The same question as a training row, spaced differently.
    test[3] = dict(test[3], instruction=" ".join(cmd_rows[1500]["instruction"]))
    write_rows(tmp_path / "test.jsonl", test)
    cfg = S.compose(["dataset=cmd", f"dataset.test={tmp_path / 'test.jsonl'}"])
    with pytest.raises(DataError, match=r"test\.jsonl:4: field 'instruction':.*repeats a train question") as e:
        heldout_test_spec(cfg, tmp_path)
    assert e.value.line == 4


@pytest.mark.parametrize("overrides, field", [
    (["dataset=cmd", "dataset.test_rows=10"], "test_rows"),  # a test file and rows to carve
    (["dataset=cmedqa2", "dataset.test_rows=300"], "val_rows"),  # 98 + 300 > 398 rows
    (["dataset=cmedqa2", "dataset.val_rows=null"], "val_rows"),
])
def test_bad_split_settings_name_the_field(tmp_path, overrides, field):
    with pytest.raises(DataError) as e:
        data_specs(S.compose(overrides), tmp_path)
    assert e.value.field == field and f"field {field!r}" in str(e.value)


@pytest.fixture(params=["carved", "files"])
def planted(request, tmp_path, cmd_rows, val_rows):
    """A config whose validation and test rows, and training rows past train_limit, carry markers.
    carved: cmedqa2's shape, validation and test cut from the train file's tail; files: cmd's
    shape, separate files and a train_limit."""
    data = tmp_path / "data"
    if request.param == "carved":
        rows = val_rows[:200] + marked(val_rows[200:], HELD_OUT)  # 100 test + 98 val rows at the tail
        write_rows(data / "train.jsonl", rows)
        return S.compose(["dataset=cmedqa2", f"dataset.train={data / 'train.jsonl'}", "accel=dps"])
    write_rows(data / "train.jsonl", cmd_rows[:200] + marked(cmd_rows[200:300], UNUSED))
    write_rows(data / "val.jsonl", marked(val_rows, HELD_OUT))
    write_rows(data / "test.jsonl", marked(load_rows(SAMPLES / "cmd" / "test.jsonl"), HELD_OUT))
    return S.compose(["dataset=cmd", f"dataset.train={data / 'train.jsonl'}", "dataset.train_limit=200",
                      f"dataset.val={data / 'val.jsonl'}", f"dataset.test={data / 'test.jsonl'}", "accel=dps"])


def test_nothing_is_fitted_on_held_out_rows(planted, tmp_path, monkeypatch):
    """F and the DPS sample are built as a search builds them (accel=dps stratifies by F), with
    the rows each one is given recorded; the markers show where a row came from."""
    monkeypatch.setenv("AUTODP_CACHE", str(tmp_path / "cache"))  # F is built here, not loaded
    given: dict[str, list] = {}

    def recorder(name, fn):
        def wrapped(rows, *args, **kwargs):
            given[name] = list(rows)
            return fn(rows, *args, **kwargs)
        return wrapped

    monkeypatch.setattr("autodp.accel.screening.build.build_screening", recorder("F", S.build_screening))
    monkeypatch.setattr(autodp.run, "sample_rows", recorder("DPS", autodp.run.sample_rows))
    specs = data_specs(planted, tmp_path / "splits")
    f_path = S.screening_model_path(planted)
    autodp.run.dps_train(planted, specs.train, tmp_path / "splits", f_path)
    assert len(given["F"]) == len(given["DPS"]) == 200
    for name, rows in given.items():
        assert seen(rows, HELD_OUT) == 0 and seen(rows, UNUSED) == 0, name
    # The pre-warm pool keeps every training row (train_limit aside) but no held-out one.
    assert seen(load_spec(specs.pool), HELD_OUT) == 0
    # The markers are really there: validation scores on marked rows, the test split is marked.
    assert seen(load_spec(specs.val), HELD_OUT) == len(load_spec(specs.val))
    test = load_spec(heldout_test_spec(planted, tmp_path / "splits"))
    assert seen(test, HELD_OUT) == len(test) == (100 if planted.dataset.test is None else 300)


class OpenedPaths:
    """Every file this process opens (an audit hook sees open() from any module, and numpy's and
    pathlib's too), while recording."""

    def __init__(self):
        self.paths: list[str] = []
        self.recording = False
        sys.addaudithook(self._hook)  # cannot be removed: inert once recording stops

    def _hook(self, event: str, args: tuple) -> None:
        if self.recording and event == "open" and isinstance(args[0], (str, os.PathLike)):
            self.paths.append(os.path.realpath(args[0]))


@pytest.mark.slow
def test_a_search_never_opens_the_test_split(tmp_path, monkeypatch):
    test_file = tmp_path / "heldout" / "test.jsonl"
    test_file.parent.mkdir()
    test_file.write_bytes((SAMPLES / "cmd" / "test.jsonl").read_bytes())
    cfg = S.compose(["dataset=cmd", f"dataset.test={test_file}", "agent=heuristic", "logger=none",
                     "dataset.train_limit=80", "eval.val_limit=40", "search.max_rounds=1", "search.min_rounds=1",
                     "teams=cleaning", "eval.seeds=2", f"cache.dir={tmp_path / 'crm'}"])
    opened = OpenedPaths()

    class RecordedSearch(autodp.run.Search):
        # Only the search: an end-of-run confirmation may read the test split once it is over.
        def run(self):
            try:
                return super().run()
            finally:
                opened.recording = False

    monkeypatch.setattr(autodp.run, "Search", RecordedSearch)
    opened.recording = True
    out = autodp.run.run_search(cfg, tmp_path / "run")
    opened.recording = False
    assert out["best"]
    data_files = {p for p in opened.paths if p.endswith(".jsonl")}
    assert str(resolve_path(cfg.dataset.train).resolve()) in data_files  # the recorder sees reads
    assert str(test_file.resolve()) not in opened.paths
    # and once the search has decided, the confirmation scores on it
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"]["rows"] == 300


def test_cmd_noisy_is_its_config_regenerated(tmp_path):
    cfg = OmegaConf.load(ROOT / "conf" / "dataset" / "cmd_noisy.yaml")
    write_noisy_dataset(cfg, tmp_path)
    for name in ("train.jsonl", "manifest.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLES / "cmd_noisy" / name).read_bytes(), name


def test_cmd_noisy_carries_every_kind_at_the_documented_rate(cmd_rows):
    cfg = OmegaConf.load(ROOT / "conf" / "dataset" / "cmd_noisy.yaml")
    rows, manifest = noisy_dataset(cfg)
    assert len(rows) == 400 and [r["id"] for r in rows] == [r["id"] for r in cmd_rows[:400]]
    kinds = Counter(m["kind"] for m in manifest)
    assert set(kinds) == set(cfg.noise.kinds) and sum(kinds.values()) == 120  # 30%, 15 per kind
    by_id, clean = {r["id"]: r for r in rows}, {r["id"]: r for r in cmd_rows[:400]}
    labelled = {m["id"] for m in manifest}
    assert all(by_id[i]["instruction"] == clean[i]["instruction"] and by_id[i]["output"] == clean[i]["output"]
               for i in clean if i not in labelled)  # unlabelled rows are untouched
    exact = {(r["instruction"], r["output"]) for r in cmd_rows[:400]}
    for m in manifest:
        r, c = by_id[m["id"]], clean[m["id"]]
        if m["kind"] == "duplicate":
            assert (r["instruction"], r["output"]) in exact and r["instruction"] != c["instruction"]
        elif m["kind"] == "near_duplicate":  # a copy of another row, edited: no exact copy anywhere
            assert (r["instruction"], r["output"]) not in exact and r["instruction"] != c["instruction"]
            assert any(r["instruction"].rstrip("？?。") == o["instruction"].rstrip("？?。")
                       and len(o["output"]) - len(r["output"]) == 1 for o in cmd_rows[:400] if o["id"] != m["id"])
        elif m["kind"] == "html":
            assert "<div" in r["output"] and "点击咨询" in r["output"]
        elif m["kind"] == "truncate":
            assert c["output"].startswith(r["output"]) and len(r["output"]) < len(c["output"])
    # Nothing in a row says it is noisy: meta is only the dataset's name.
    assert all(r["meta"] == {"dataset": "cmd_noisy"} for r in rows)
