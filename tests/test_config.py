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
         ("agent", "transformers"): ["agent.client.model=/models/agent"]}


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


@pytest.mark.parametrize("overrides", ["cache.dir=/shared/crm,seed=0", "seed=" + "1" * 200])
def test_a_multirun_cell_is_one_folder_of_its_own(overrides):
    # A path value once made a cell of nested folders, one per '/' of cache.dir=/a/b.
    cell = OmegaConf.create({"d": f"${{autodp_dirname:'{overrides}'}}"}).d
    other = OmegaConf.create({"d": f"${{autodp_dirname:'{overrides}2'}}"}).d
    assert "/" not in cell and len(cell) <= 120 and cell != other


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
    assert r.returncode == 2 and "needs eval.seeds >= 2" in r.stderr
    assert not (tmp_path / "splits").exists()


@pytest.mark.parametrize("override, key", [
    ("search.max_rounds=-1", "search.max_rounds=-1: expected an integer >= 1"),
    ("search.max_rounds=0", "search.max_rounds=0"),
    ("accel.dps.ratio=1.5", "accel.dps.ratio=1.5: expected a number in (0, 1]"),  # checked under accel=none too
    ("accel.dps.ratio=0", "accel.dps.ratio=0"),
    ("dataset.train_limit=0", "dataset.train_limit=0: expected an integer >= 1"),
    ("eval.seeds=0", "eval.seeds=0"),
    ("eval.val_limit=0", "eval.val_limit=0"),
    ("search.z=-1", "search.z=-1"),
    ("search.budget=0", "search.budget=0: expected an integer >= 1"),
    ("max_row_bytes=0", "max_row_bytes=0"),
    ("finetune.order=random", "finetune.order='random': expected 'shuffle' or 'row_hash'"),
    ("finetune.budget=tokens", "finetune.budget='tokens': expected 'epochs' or 'steps'"),
    # a judge compares two arms (task=compare), R(f) scores one; answers need generation settings
    ("eval.metric=judge_win_rate", "eval.metric='judge_win_rate': expected 'nll_per_char' or 'nll_per_token' or "
                                   "'rouge_l_char' or 'bleu_char'"),
    ("eval.metric=rouge_l_char", "eval.metric=rouge_l_char scores the model's answers: it needs eval.generation"),
    ("eval=rouge_l eval.generation.max_tokens=0", "eval.generation.max_tokens=0: expected an integer >= 1"),
    ("compare.questions=0", "compare.questions=0: expected an integer >= 1"),
])
def test_out_of_range_values_are_named_before_any_work(override, key):
    from autodp.config_checks import ConfigError, check_config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*override.split(), "search.pick=top"])
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    assert key in str(e.value)


def test_the_shipped_defaults_pass_the_checks():
    from autodp.config_checks import check_config

    for group, option in OPTIONS:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            check_config(compose("config", overrides=[f"{group}={option}", *NEEDS.get((group, option), [])]))


@pytest.mark.parametrize("override, words", [
    ("search.max_rounds=-1", "search.max_rounds=-1: expected an integer >= 1"),
    ("accel.dps.ratio=1.5", "accel.dps.ratio=1.5: expected a number in (0, 1]"),
    ("dataset.train_limit=0", "dataset.train_limit=0: expected an integer >= 1"),
])
def test_a_user_error_is_one_message_and_exit_2_with_nothing_written(tmp_path, override, words):
    run_dir = tmp_path / "run"
    r = subprocess.run([sys.executable, "launch.py", override, "agent=heuristic", "logger=none",
                        f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.count(f"autodp: error: {words}") == 1
    assert "Traceback" not in r.stderr and "HYDRA_FULL_ERROR" not in r.stderr
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "splits").exists()


def test_every_test_has_a_time_limit(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert 0 < float(pytestconfig.getini("timeout")) <= 1800


def test_the_teams_with_operators_are_the_teams_a_search_may_combine():
    """One knob: conf/teams. A team without operators is not offered (no second list to agree with)."""
    from autodp.config_checks import ConfigError
    from autodp.run import offered_teams

    def offered(*overrides: str) -> list[str]:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return [t.value for t in offered_teams(compose("config", overrides=list(overrides)))]

    assert offered() == ["cleaning", "optimization", "generation", "selection"]
    assert offered("teams=cleaning") == ["cleaning"]
    assert offered("teams.selection=[]", "teams.generation=[]") == ["cleaning", "optimization"]
    with pytest.raises(ConfigError, match="no team has operators"):
        offered("teams=cleaning", "teams.cleaning=[]")
