"""process=ray gives the rows process=local gives: each Cleaning operator (near-duplicate removal
with its LSH buckets grouped on Ray), an LLM's answers generated on a pool of Ray actors, and a
whole strategy's export streamed from sharded reads to JSONL parts, on the shipped CMD sample split
into many Ray blocks (on the local Ray cluster `make test` starts, 2 CPUs); a killed export
resumes; a Ray cluster inside a real (localhost) SLURM allocation."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import autodp.ops  # noqa: F401 - registers the operators
from autodp.ops.base import OPERATORS, build_op, spec_name
from autodp.process import build_engine
from autodp.process.local import LocalEngine
from conftest import RAY, RAY_ADDRESS, ROOT


def cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="module")
def ray_engine():
    import ray

    engine = build_engine(OmegaConf.to_container(cfg("process=ray", *RAY, "process.batch_size=128",
                                                     "process.progress=false").process))
    if RAY_ADDRESS:  # joined the cluster of `make test` (it reports the node's IP), not a Ray of its own
        gcs = engine.pipeline(".").ray.get_runtime_context().gcs_address
        assert gcs.rsplit(":", 1)[1] == RAY_ADDRESS.rsplit(":", 1)[1], gcs
    yield engine
    ray.shutdown()


def same(a, b):
    (rows_a, rep_a), (rows_b, rep_b) = a, b
    assert rows_a == rows_b  # same rows, same texts, same order
    assert (rep_a.rows_in, rep_a.rows_out, rep_a.rows_changed) == (rep_b.rows_in, rep_b.rows_out, rep_b.rows_changed)


def test_the_engines_are_config_groups_and_local_is_the_default():
    assert type(build_engine(OmegaConf.to_container(cfg().process))) is LocalEngine
    row_local = sorted(n for n, c in OPERATORS.items() if c.row_local)
    assert row_local == ["clean_html", "ngram_repetition_filter", "special_char_filter", "token_num_filter"]
    assert [n for n, c in OPERATORS.items() if c.row_features] == ["minhash_dedup"]


@pytest.mark.parametrize("name", ["clean_html", "minhash_dedup", "special_char_filter", "token_num_filter",
                                  "ngram_repetition_filter"])
def test_each_cleaning_operator_gives_the_same_rows_on_ray(ray_engine, cmd_rows, name):
    (spec,) = [s for s in OmegaConf.to_container(cfg().teams)["cleaning"] if spec_name(s) == name]
    op = build_op(spec)
    local = LocalEngine().run(op, cmd_rows)
    assert local[1].rows_in == len(cmd_rows) == 2000
    same(ray_engine.run(op, cmd_rows), local)


def test_an_llm_generates_on_a_pool_of_ray_actors_the_answers_it_generates_here(ray_engine):
    """Uncached prompts: the client's chunk is cut into the backend's own batches, each generated
    whole by one of two actors (1 CPU each) as this process's backend generates it."""
    from autodp.llm.client import build_client
    from autodp.process.ray_llm import pooled

    client = {**OmegaConf.to_container(cfg("llm=smollm2").llm.client), "cache": False, "batch_size": 2,
              "max_tokens": 12}
    prompts = [[{"role": "user", "content": f"Name {n} fruits."}] for n in range(1, 8)]  # batches of 2, 2, 2, 1
    here = build_client(client)
    with pooled(ray_engine.pipeline(".").ray, client, actors=2, cpus=1, gpus=0) as pool:
        assert pool.model == here.model and pool.backend.batch_size == 2 * 2 * 4
        got = pool.complete(prompts)
        assert pool.last_call["generated"] == 7
    assert got == here.complete(prompts)
    assert len({c.text for c in got}) > 1  # the answers are the prompts' own


def test_rows_linked_through_shared_buckets_are_one_group():
    from autodp.process.ray_stream import groups

    # buckets 7: rows 1, 2; 8: rows 2, 3 (so 1-2-3 is one group); 9: rows 4, 5; 10: rows 5, 5
    rows, label = groups(np.array([7, 7, 8, 8, 9, 9, 10, 10]), np.array([1, 2, 2, 3, 5, 4, 5, 5]))
    assert rows.tolist() == [1, 2, 3, 4, 5]
    assert label[0] == label[1] == label[2] != label[3] == label[4]


def exported(out):
    m = json.loads((out / "manifest.json").read_text())
    files = sorted((out / "train").glob("part-*.jsonl")) or [out / "train.jsonl"]
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    steps = [(s["op"], s["rows_in"], s["rows_out"], s["rows_changed"]) for s in m["steps"]]
    return rows, m["input"], m["output"], steps


def request(tmp_path, strategy, *overrides):
    from autodp.data.specs import data_specs
    from autodp.evaluate.request import EvalRequest

    c = cfg("process=ray", "process.batch_size=64", "process.progress=false", "dataset.train_limit=200", *overrides)
    return replace(EvalRequest.from_config(c, *data_specs(c, tmp_path / "splits"), out_dir=str(tmp_path)), strategy=strategy)


@pytest.mark.slow
def test_an_export_on_ray_streams_to_the_rows_and_manifest_of_the_local_export(tmp_path, ray_engine, cmd_rows, caplog):
    """A whole strategy with both LLM teams (their answers cached by the local run, as a search
    leaves them): the same rows, ids and texts, and the same counts in the manifest, from sharded
    reads, Parquet steps and JSONL parts; each LLM operator asked a pool of Ray actors."""
    from datasets import load_from_disk

    from autodp.apply import export
    from autodp.data.io import write_rows

    given = [dict(r) for r in cmd_rows[:200]]
    for i in (7, 81, 150):  # work for the Generation team's fill-in operators
        given[i]["instruction"], given[i + 1]["output"] = "", ""
    write_rows(data := tmp_path / "train.jsonl", given)
    # SmolLM2's rewrites of Chinese rows fail the operators' checks at any length: 48 tokens keep
    # it short. One actor per pool: two actors' answers are the test above's.
    req = replace(request(tmp_path, "cleaning>generation>optimization", "llm=smollm2", "llm.fraction=0.03",
                          "llm.max_pairs=2", "llm.client.max_tokens=48", "process.shard_bytes=50000",
                          "process.llm.actors=1"), train={"path": str(data), "limit": None})
    llm_ops = ["generate_qa_from_shots", "fill_missing_question", "fill_missing_answer", "optimize_question",
               "optimize_answer"]
    export(replace(req, process=None), local := tmp_path / "local")
    with caplog.at_level("INFO", logger="autodp.process.ray_llm"):
        export(req, exported_to := tmp_path / "ray")
    assert caplog.text.count("llm pool: 1 Ray actors") == len(llm_ops)  # one pool per LLM operator
    rows, inp, out, steps = exported(exported_to)
    assert (rows, inp, out, steps) == exported(local)
    assert [s[0] for s in steps][-5:] == llm_ops and len(rows) < 200

    def llm_counts(out, keys=("llm_seconds", "llm_cached")):  # time and cache hits aside
        return [{k: v for k, v in s["stats"].items() if k not in keys}
                for s in json.loads((out / "manifest.json").read_text())["steps"][-5:]]

    assert all(s["processed"] >= 1 for s in llm_counts(exported_to)), llm_counts(exported_to)  # each asked the LLM
    assert llm_counts(exported_to) == llm_counts(local)  # and answered the same on both engines
    assert all(s["llm_cached"] == s["processed"] for s in llm_counts(exported_to, ("llm_seconds",)))  # from the cache
    assert load_from_disk(str(exported_to / "hf"))["id"] == [r["id"] for r in rows]
    assert not (exported_to / ".steps").exists()  # checkpoints go once the export is whole (no CRM here)


def test_each_part_of_a_streamed_step_is_a_ray_task_of_its_own(tmp_path, ray_engine, cmd_rows):
    """Ray fuses a step's map with the read of its parts and bundles their inputs for the chain's
    largest batch size: a batch size in rows, counted in parts, put every part in one task (one
    CPU, however large the cluster). One part a task is one block a task, so a row-local step
    writes as many parts as it read."""
    from autodp.data.io import write_rows
    from autodp.process.ray_stream import parts

    write_rows(data := tmp_path / "train.jsonl", cmd_rows[:600])
    pipe = ray_engine.pipeline(steps := tmp_path / "steps")
    pipe.shard_bytes = 50_000
    key, _ = pipe.read({"path": str(data)}, None)
    rep = pipe.step(build_op("clean_html"), "cleaned", key, None)
    assert rep.rows_out == 600 and len(parts(steps / "cleaned")) == len(parts(steps / key)) >= 4


def test_a_streamed_read_names_the_line_and_field_of_bad_input(tmp_path, ray_engine, cmd_rows):
    from autodp.data.io import DataError

    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in cmd_rows[:300]]
    lines[250] = lines[10]  # a repeated id, in another shard than its first line
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    req = replace(request(tmp_path, "cleaning", "process.shard_bytes=20000"), train={"path": str(bad), "limit": None})
    from autodp.apply import export

    with pytest.raises(DataError, match=rf"bad.jsonl:251: field 'id': duplicate id .*first on line 11"):
        export(req, tmp_path / "out")
    lines[250] = lines[250].replace('"output"', '"outptu"')
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:251: field 'output': missing"):
        export(req, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


def launch(run_dir, *overrides, **popen):
    return subprocess.Popen([sys.executable, "launch.py", "task=apply", "strategy=cleaning", "process=ray", *RAY,
                             "process.progress=false", "process.batch_size=256",
                             "dataset.train_limit=600", "logger=none", f"hydra.run.dir={run_dir}", *overrides],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.mark.slow
def test_a_killed_ray_export_resumes_from_its_last_finished_operator(tmp_path):
    run = tmp_path / "run"
    first = launch(run)
    steps = run / "export" / ".steps"
    deadline = time.time() + 600
    while len([p for p in steps.glob("*") if not p.name.startswith(".")]) < 3:  # the read and two operators
        assert first.poll() is None and time.time() < deadline, first.stdout.read()[-3000:] if first.stdout else ""
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = len([p for p in steps.glob("*") if not p.name.startswith(".")]) - 1
    assert not (run / "export" / "manifest.json").exists()

    again = launch(run)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log[-3000:]
    assert log.count("finished before") == done >= 2
    from autodp.apply import export

    local = export(replace(request(tmp_path, "cleaning", "dataset.train_limit=600"), process=None), tmp_path / "local")
    assert exported(run / "export")[:3] == exported(tmp_path / "local")[:3] and local["output"]["rows"] < 600


@pytest.mark.slow
def test_task_apply_on_a_ray_cluster_started_inside_a_slurm_allocation(tmp_path, slurm_cluster):
    """slurm/ray-apply.sbatch on the localhost SLURM cluster: the Ray head as a step of the job, the
    export connecting to it; the rows of the local engine."""
    env = {**os.environ, "AUTODP_RUN_DIR": str(tmp_path / "run")}
    r = subprocess.run(["sbatch", "--wait", "-N", "1", "-c", "2", "--mem=6G", "-o", str(tmp_path / "job.out"),
                        "slurm/ray-apply.sbatch", "dataset.train_limit=300", "process.progress=false", "logger=none",
                        "strategy=cleaning"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = (tmp_path / "job.out").read_text()
    assert r.returncode == 0, r.stderr + log[-3000:]
    assert "1 Ray nodes up" in log and re.search(r"ray: [\d.]+:\d+, 2.0 CPUs", log)  # joined, not started its own
    from autodp.apply import export

    export(replace(request(tmp_path, "cleaning", "dataset.train_limit=300"), process=None), tmp_path / "local")
    assert exported(tmp_path / "run" / "export")[:3] == exported(tmp_path / "local")[:3]
