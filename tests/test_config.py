"""Every config in conf/ composes and builds; bad configs fail before any work, naming the problem."""

from __future__ import annotations

import importlib.util

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

import harness
from conftest import compose_config, run_cli, tiny_overrides
from harness.config import CONF_DIR, is_pretrained, register_configs
from harness.engine.checks import ConfigError
from harness.engine.plan import prepare


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def test_every_registered_component_has_a_yaml_and_vice_versa():
    assert options("mechanism") == harness.mechanisms()
    assert options("task") == harness.tasks()


@pytest.mark.parametrize("mechanism", options("mechanism"))
@pytest.mark.parametrize("task", options("task"))
def test_every_mechanism_and_task_composes_and_builds(mechanism, task, tmp_path):
    plan = prepare(compose_config([f"mechanism={mechanism}", f"task={task}", f"results_dir={tmp_path}"]))
    assert plan.model.mechanism_name == mechanism
    assert plan.task.name == task
    assert not any(tmp_path.iterdir()), "preparing a run wrote to the store"


@pytest.mark.parametrize("group", ["model", "train", "eval", "experiment", "policy"])
def test_every_option_of_the_other_groups_composes_and_builds(group, tmp_path):
    for option in options(group):
        overrides = [f"{group}={option}", f"results_dir={tmp_path}"] + (["model=hf"] if group == "policy" else [])
        cfg = compose_config(overrides)
        if not is_pretrained(cfg):
            prepare(cfg)
            continue
        pytest.importorskip("transformers")  # a pretrained model's config (model=hf) is checked by its own planner
        from harness.pretrained.run import plan_pretrained

        if option == "kvpress" and importlib.util.find_spec("kvpress") is None:
            continue
        text_task = [] if group == "experiment" else ["task=niah"]  # the default, passkey, has no text form
        plan_pretrained(compose_config([*overrides, *text_task, "model.name=any/model"]))


@pytest.mark.parametrize("launcher, target", [("slurm", "SlurmLauncher"), ("local_parallel", "JoblibLauncher")])
def test_launcher_presets_compose(launcher, target):
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        config = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert config.hydra.launcher._target_.endswith(target)


def test_run_id_ignores_paths_and_flags_but_not_semantics(tmp_path):
    base = prepare(compose_config([f"results_dir={tmp_path}/a"])).run_id
    assert base == prepare(compose_config([f"results_dir={tmp_path}/b", "force=true", "progress=false"])).run_id
    assert base == prepare(compose_config(["mode=eval", "keep_weights=false", "data_workers=0",
                                           "checkpoint.every_steps=5", "checkpoint.every_minutes=null"])).run_id
    assert base != prepare(compose_config(["seed=1"])).run_id
    assert base != prepare(compose_config(["train.steps=7"])).run_id


@pytest.mark.parametrize("override, key", [
    ("model.d_modle=3", "d_modle"),
    ("model.d_model=wide", "d_model"),
    ("train.lr=fast", "lr"),
    ("mechanism.windw=3", "windw"),
])
def test_typos_and_wrong_types_name_the_key(override, key):
    with pytest.raises((HydraException, OmegaConfBaseException), match=key):
        compose_config(["mechanism=sliding_window", override])


def test_appended_unknown_mechanism_option_fails_before_work(tmp_path):
    with pytest.raises(ConfigError, match="windw"):
        prepare(compose_config(["mechanism=sliding_window", "+mechanism.windw=3", f"results_dir={tmp_path}"]))


def test_unknown_mechanism_lists_the_known_ones():
    with pytest.raises(HydraException, match="(?s)Available options in 'mechanism'.*full_attention.*sliding_window"):
        compose_config(["mechanism=nope"])


@pytest.mark.parametrize("override, message", [
    ("eval.grid.context_len=[8]", "shorter than"),
    ("+eval.grid.colour=[1]", "no grid knob"),
    ("train.min_context_len=500", "exceeds"),
    ("model.segment_len=0", "segment_len"),
    ("model.n_heads=3", "divisible"),
    ("device=cuda:7", "device"),
    ("precision=fp8", "precision"),
    ("data_workers=-1", "data_workers"),
    ("checkpoint.every_steps=0", "checkpoint.every_steps"),
    ("checkpoint.every_minutes=-1", "checkpoint.every_minutes"),
    ("mode=evaluate", "mode"),
])
def test_impossible_settings_fail_before_any_write(override, message, tmp_path):
    if override.startswith("device") and __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match=message):
        prepare(compose_config([override, f"results_dir={tmp_path}"]))
    assert not any(tmp_path.iterdir())


def test_cli_rejects_a_bad_config_with_a_clear_message_and_writes_nothing(tmp_path):
    result = run_cli(*tiny_overrides(tmp_path), "eval.grid.context_len=[8]", cwd=tmp_path)
    assert result.returncode != 0
    assert "memarena: error: passkey: context_len=8 is shorter" in result.stderr
    assert not (tmp_path / "results").exists()


def test_cli_unknown_mechanism_lists_the_known_ones(tmp_path):
    result = run_cli("mechanism=nope", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'mechanism/nope'" in result.stderr and "sliding_window" in result.stderr
    assert not (tmp_path / "results").exists()


def test_default_mechanisms_are_parameter_matched_to_full_attention(tmp_path):
    """The Long Range Arena rule: within 10% of the reference's parameters at the default size."""
    def parameters(mechanism: str) -> int:
        return prepare(compose_config([f"mechanism={mechanism}", f"results_dir={tmp_path}"])).model.num_parameters()

    reference = parameters("full_attention")
    for mechanism in options("mechanism"):
        assert abs(parameters(mechanism) - reference) <= 0.1 * reference, mechanism


@pytest.mark.parametrize("experiment", ["leaderboard", "scaling", "memory_budget"])
def test_presets_that_rank_train_several_seeds(experiment):
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    seeds = str(cfg.hydra.sweeper.params["seed"]).split(",")
    assert len(seeds) >= 3, f"{experiment} ranks mechanisms on {len(seeds)} seed(s)"
