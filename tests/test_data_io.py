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
