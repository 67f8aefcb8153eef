import json
import subprocess
import sys

import pytest

from autodp.data.io import DataError, fingerprint, load_rows, write_rows
from conftest import ROOT

GOOD = {"instruction": "头痛怎么办", "input": "", "output": "多休息。", "meta": {}}


def write(tmp_path, lines: list[bytes]):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


@pytest.mark.parametrize("bad_line, field, words", [
    (b'{"instruction": "x", ', None, "bad JSON"),
    (dumps({k: v for k, v in GOOD.items() if k != "output"}), "output", "missing"),
    (dumps({**GOOD, "input": 3}), "input", "expected a string"),
    (dumps({**GOOD, "meta": "m"}), "meta", "expected an object"),
    (b'{"instruction": "' + "胸闷气短".encode("gbk") + b'"}', None, "not valid UTF-8"),
    (b"[1, 2]", None, "expected a JSON object"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, bad_line, field, words):
    p = write(tmp_path, [dumps(GOOD), dumps(GOOD), bad_line])
    with pytest.raises(DataError) as e:
        load_rows(p)
    msg = str(e.value)
    assert f"{p}:3:" in msg and words in msg
    assert e.value.line == 3 and e.value.field == field
    if field:
        assert repr(field) in msg


def test_empty_and_missing_files(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n")
    with pytest.raises(DataError, match="empty file"):
        load_rows(p)
    with pytest.raises(DataError, match="no such file"):
        load_rows(tmp_path / "nope.jsonl")


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.jsonl"
    write_rows(p, [GOOD])
    before = p.read_bytes()

    def rows():
        yield GOOD
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_rows(p, rows())
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["out.jsonl"]


def test_fingerprint_depends_on_text_and_order_only():
    a, b = dict(GOOD, id="a"), dict(GOOD, id="b", output="别的")
    assert fingerprint([a, b]) != fingerprint([b, a])
    assert fingerprint([a]) == fingerprint([dict(a, id="z", meta={"k": 1})])


def test_shipped_samples_are_valid(cmd_rows, val_rows):
    assert len(cmd_rows) == 2000 and len(val_rows) == 398


def test_launch_exits_nonzero_on_bad_input(tmp_path):
    bad = write(tmp_path, [dumps(GOOD), dumps({**GOOD, "output": None})])
    r = subprocess.run([sys.executable, "launch.py", f"dataset.train={bad}", "agent=heuristic",
                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert f"{bad}:2: field 'output': expected a string" in r.stderr


def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", list(overrides))


def test_a_directory_or_a_table_is_named_as_such(tmp_path):
    with pytest.raises(DataError, match="is a directory; a JSONL file"):
        load_rows(tmp_path)
    table = tmp_path / "qa.csv"
    table.write_text("instruction,input,output\n头痛怎么办,,多休息\n")
    with pytest.raises(DataError, match=r"a \.csv file; JSONL \(one JSON object per line\) is expected"):
        load_rows(table)
    renamed = table.rename(tmp_path / "qa.jsonl")  # a table under a JSONL name
    with pytest.raises(DataError, match=":1: bad JSON: .*; JSONL \\(one JSON object per line\\) is expected"):
        load_rows(renamed)


def test_a_duplicate_id_names_its_line(tmp_path):
    p = write(tmp_path, [dumps({**GOOD, "id": "a"}), dumps({**GOOD, "id": "b"}), dumps({**GOOD, "id": "a"})])
    with pytest.raises(DataError) as e:
        load_rows(p)
    assert (e.value.line, e.value.field) == (3, "id") and f"{p}:3: field 'id': duplicate id 'a', first on line 1" in str(e.value)


def test_an_oversized_row_is_refused_under_max_row_bytes(tmp_path):
    p = write(tmp_path, [dumps(GOOD), dumps({**GOOD, "output": "长" * 700_000})])  # ~2 MB of UTF-8
    assert len(load_rows(p)) == 2  # no limit unless asked
    with pytest.raises(DataError) as e:
        load_rows(p, max_row_bytes=1_000_000)
    assert e.value.line == 2 and "over max_row_bytes=1,000,000" in str(e.value) and "长" not in str(e.value)


def test_every_row_a_run_reads_is_checked_up_front_also_past_train_limit(tmp_path, cmd_rows):
    from autodp.data.specs import data_specs

    lines = [dumps(r) for r in cmd_rows[:460]]
    lines[449] = dumps({**cmd_rows[449], "output": None})  # line 450: read by the pre-warm and the export
    p = write(tmp_path, lines)
    cfg = compose(f"dataset.train={p}", "dataset.train_limit=80")
    with pytest.raises(DataError, match=f"{p}:450: field 'output': expected a string"):
        data_specs(cfg, tmp_path / "splits")
    lines[449] = dumps({**cmd_rows[449], "output": "长" * 700_000})  # a 2 MB row, refused by default
    p = write(tmp_path, lines)
    with pytest.raises(DataError, match=f"{p}:450: a row of 2,1.*bytes, over max_row_bytes"):
        data_specs(cfg, tmp_path / "splits")


def test_an_evaluation_signature_covers_the_content_of_its_input_files(tmp_path, cmd_rows):
    """A failed evaluation is not replayed after the input file is fixed in place."""
    from autodp.data.specs import data_specs
    from autodp.evaluate.request import EvalRequest

    p = tmp_path / "train.jsonl"
    write_rows(p, cmd_rows[:100])
    cfg = compose(f"dataset.train={p}", "dataset.train_limit=50")

    def signature() -> str:
        return EvalRequest.from_config(cfg, *data_specs(cfg, tmp_path / "splits"), out_dir="x").signature

    before = signature()
    assert signature() == before  # deterministic
    write_rows(p, [dict(r, output=r["output"] + "。") if i == 70 else r for i, r in enumerate(cmd_rows[:100])])
    assert signature() != before  # a row past train_limit changed: the pool the pre-warm reads differs
