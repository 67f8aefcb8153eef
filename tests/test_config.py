"""Every config of every group composes (lightning-hydra-template's rule), and an option that
does not exist fails loudly instead of being ignored."""
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import autodp  # noqa: F401 - registers the config resolvers

from conftest import ROOT

CONF = ROOT / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
# Mandatory values (???) a user must set, e.g. a local model path.
NEEDS = {**{("finetune", f"qwen2.5-1.5b{v}"): ["finetune.model.path=/models/qwen"] for v in ("", "-zero3", "-lora")},
         ("agent", "transformers"): ["agent.model=/models/agent"]}


def test_expected_groups_exist():
    assert {"agent", "dataset", "accel", "finetune", "eval", "search", "teams", "cluster"} <= set(GROUPS)
    assert {o for g, o in OPTIONS if g == "accel"} == {"none", "dps", "dps_pts", "all"}


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_config_composes_and_resolves(group, option):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"{group}={option}", *NEEDS.get((group, option), [])])
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved[group] is not None


def test_run_dir_follows_resume(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"resume={tmp_path}"], return_hydra_config=True)
    assert cfg.hydra.run.dir == str(tmp_path)


def test_an_unknown_search_method_fails_clearly_before_any_work(tmp_path):
    r = subprocess.run([sys.executable, "launch.py", "search=sela", "agent=heuristic", f"hydra.run.dir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "Could not find 'search/sela'" in r.stderr and "mcts" in r.stderr  # the known methods are listed
    assert not (tmp_path / "config.yaml").exists()


def test_contradicting_search_settings_fail_before_any_work(tmp_path):
    # cmedqa2 has no validation file: a run that reads its data writes the held-out split first
    r = subprocess.run([sys.executable, "launch.py", "dataset=cmedqa2", "search.pick=significant", "eval.seeds=1",
                        "agent=heuristic", "logger=none", f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0 and "needs eval.seeds >= 2" in r.stderr
    assert not (tmp_path / "splits").exists()
