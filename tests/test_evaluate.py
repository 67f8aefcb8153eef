"""R(f) through the real evaluator: a tiny pre-warmed Llama fine-tuned on CPU (conf/finetune/cpu_tiny)."""
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
