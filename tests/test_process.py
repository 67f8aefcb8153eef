"""process=ray gives the rows process=local gives: each Cleaning operator (near-duplicate removal
with its signatures computed on Ray), and a whole strategy, on the shipped CMD sample split into many Ray blocks (a real local Ray
instance, 2 CPUs)."""
from dataclasses import replace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import autodp.ops  # noqa: F401 - registers the operators
from autodp.ops.base import OPERATORS, build_op
from autodp.process import build_engine
from autodp.process.local import LocalEngine
from conftest import ROOT


def cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="module")
def ray_engine():
    import ray

    engine = build_engine(OmegaConf.to_container(cfg("process=ray", "process.num_cpus=2",
                                                     "process.batch_size=128", "process.progress=false").process))
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
    (spec,) = [s for s in OmegaConf.to_container(cfg().teams)["cleaning"] if (s if isinstance(s, str) else next(iter(s))) == name]
    op = build_op(spec)
    local = LocalEngine().run(op, cmd_rows)
    assert local[1].rows_in == len(cmd_rows) == 2000
    same(ray_engine.run(op, cmd_rows), local)


@pytest.mark.slow
def test_an_evaluation_processes_the_same_rows_on_ray(tmp_path, ray_engine):
    """The evaluator's f(D) (LESS selection included, which runs in-process under either engine)."""
    from autodp.data.specs import data_specs
    from autodp.evaluate.evaluator import process
    from autodp.evaluate.request import EvalRequest

    c = cfg("process=ray", "process.num_cpus=2", "process.batch_size=64", "process.progress=false",
            "dataset.train_limit=300")
    req = replace(EvalRequest.from_config(c, *data_specs(c, tmp_path / "splits"), out_dir=str(tmp_path)), strategy="cleaning>selection")
    rows, on_ray, ray_reports = process(req, None)
    _, local, local_reports = process(replace(req, process=None), None)
    assert on_ray == local and len(local) < len(rows) == 300
    assert [(r.op, r.rows_in, r.rows_out, r.rows_changed) for r in ray_reports] == \
           [(r.op, r.rows_in, r.rows_out, r.rows_changed) for r in local_reports]
    assert replace(req, process=None).signature == req.signature  # the engine is not part of what is computed
