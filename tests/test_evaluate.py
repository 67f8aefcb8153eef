"""R(f) through the real evaluator: a tiny pre-warmed Llama fine-tuned on CPU (conf/finetune/cpu_tiny)."""
from dataclasses import replace

import pytest
from hydra import compose, initialize_config_dir

from autodp.evaluate.fidelity import measure
from conftest import ROOT


@pytest.mark.slow
def test_clean_data_scores_higher_than_noisy_for_each_seed():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config")
    f = measure(cfg, seeds=[0, 1, 2], fraction=0.4)
    assert all(g > 0 for g in f.gaps), f.gaps
    assert f.mean_gap > 2 * f.sd_gap, (f.gaps, f.mean_gap, f.sd_gap)


@pytest.mark.slow
def test_r_from_generations_scores_the_model_own_answers(tmp_path):
    """eval=rouge_l: each fine-tune answers the scored validation questions, and r is their mean
    ROUGE-L over characters; per-row scores (for the held-out confirmation) are those ROUGE-Ls."""
    from autodp.data.specs import data_specs
    from autodp.evaluate.evaluator import evaluate
    from autodp.evaluate.request import EvalRequest

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["eval=rouge_l", "dataset.train_limit=48", "eval.val_limit=8",
                                           "eval.seeds=2", "eval.generation.max_tokens=24"])
    req = EvalRequest.from_config(cfg, *data_specs(cfg, tmp_path / "splits"), out_dir=str(tmp_path))
    assert req.eval["generation"]["max_tokens"] == 24
    res = evaluate(replace(req, eval={**req.eval, "per_row": True}))
    assert res.status == "ok", res.traceback
    assert [len(r) for r in res.row_scores] == [8, 8] and all(0 <= x <= 100 for r in res.row_scores for x in r)
    assert res.seed_scores == pytest.approx([sum(r) / 8 for r in res.row_scores])
    assert res.score == pytest.approx(res.metrics["rouge_l_char"]) and res.score > 0  # some characters match
    assert res.metrics["nll_per_char"] > 0  # the likelihood is still reported beside it
    # answer NLL scores the same fine-tunes with other numbers: the metric is part of the identity
    assert EvalRequest.from_config(compose_default(), *data_specs(cfg, tmp_path / "splits"),
                                   out_dir=str(tmp_path)).signature != req.signature


def compose_default():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["dataset.train_limit=48", "eval.val_limit=8", "eval.seeds=2"])
