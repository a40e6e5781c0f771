"""Every model hyperparameter is a config key, typos get one line naming the known keys,
and `--config.model` can switch to another model or family.

In-process and abstract (`nnx.eval_shape`): nothing is compiled or trained.
"""

import sys
from unittest import mock

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models import registry
from smlp_jax.train import config_file, state
from smlp_jax.train.errors import ConfigError
from tests.train.tiny import REPO, apply_overrides, demo_config, official_config

FAMILY_CONFIGS = [
    ("smlpnet", ("t", "s", "b", "demo")),
    ("mixer", ("s16", "b16", "demo")),
    ("convmixer", ("768_32", "256_8", "demo")),
    ("dynamixer", ("s", "demo")),
    ("permutator", ("s7", "demo")),
    ("as_mlp", ("t", "demo")),
    ("hire_mlp", ("t", "demo")),
    ("raft_mlp", ("s", "demo")),
    ("sparse_mlp", ("s", "demo")),
]


def _params(config) -> int:
    model = nnx.eval_shape(lambda: state.build_model(config, 10, 0))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


@pytest.mark.parametrize(("family", "variants"), FAMILY_CONFIGS)
def test_every_hyperparameter_of_the_configs_model_is_a_key(family, variants):
    for variant in variants:
        config = official_config(family, variant)
        defaults = registry.hyperparameters(config.model)
        assert set(defaults) <= set(config.model_kwargs), (family, variant)
        assert config.model_kwargs_of == config.model
        # Keys the config file did not set hold the model's own values.
        for key, value in defaults.items():
            assert config.model_kwargs[key] == value or key in _set_by_file(family), (
                family,
                variant,
                key,
            )


def _set_by_file(family: str) -> set[str]:
    """model_kwargs keys the family's config file writes (its recipe's own values)."""
    text = (REPO / "configs" / f"{family}.py").read_text()
    return {
        line.split("model_kwargs.")[1].split("=")[0].strip()
        for line in text.splitlines()
        if "config.model_kwargs." in line and "=" in line
    }


def test_a_hyperparameter_the_config_file_never_set_can_be_overridden():
    """`:demo --config.model_kwargs.alpha=2` (sMLPNet's channel-MLP ratio) is a real change:
    the channel MLPs shrink from 3x to 2x."""
    base = demo_config("smlpnet", {})
    assert "alpha" in base.model_kwargs and base.model_kwargs.alpha == 3
    smaller = demo_config("smlpnet", {"model_kwargs.alpha": 2})
    assert _params(smaller) < _params(base)


def test_switching_the_model_from_the_command_line():
    """Another variant of the family: its own sizes (the config's filled-in values of the
    old variant are not carried over). Another family: only the keys it takes."""
    config = official_config("smlpnet", "t")
    with config.unlocked():
        config.model = "smlpnet_b"
    assert state.model_kwargs(config) == {}
    config = demo_config("smlpnet", {"model": "mixer_s16"})
    assert state.model_kwargs(config) == {}  # dim/depths are sMLPNet's; mixer_s16's own
    config = demo_config("smlpnet", {"model": "mixer_s16", "model_kwargs.drop_path_rate": 0.1})
    assert state.model_kwargs(config) == {"drop_path_rate": 0.1}
    mixer_params = _params(demo_config("smlpnet", {"model": "mixer_s16"}))
    want = smlp_jax.create_model("mixer_s16", num_classes=10, image_size=32, rngs=0)
    got = int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(want, nnx.Param))))
    assert mixer_params == got


def test_a_misspelt_key_still_fails():
    with pytest.raises((AttributeError, KeyError)):
        apply_overrides(demo_config("smlpnet", {}), {"model_kwargs.alhpa": 2})


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (
            "--config.optimizer.learning_rate=8",
            "unknown config key 'optimizer.learning_rate'; known keys under optimizer: b1,",
        ),
        (
            "--config.optimzer.lr=8",
            "unknown config key 'optimzer.lr' (did you mean 'optimizer.lr'?); known keys at "
            "the top level:",
        ),
        (
            "--config.model_kwargs.dimm=8",
            "unknown config key 'model_kwargs.dimm' (did you mean 'model_kwargs.dim'?)",
        ),
    ],
)
def test_unknown_key_names_the_known_ones(arg, message):
    """The line main.py prints for a misspelt key (`config_file.explain`), and the tools'
    `load` raises."""
    spec = f"{REPO}/configs/smlpnet.py:demo"
    with pytest.raises(ConfigError) as err:
        config_file.load(spec, [arg])
    assert str(err.value).startswith(message)


def test_missing_config_file_is_one_line():
    line = config_file.missing_file("configs/nonexist.py:t")
    assert line.startswith("config file configs/nonexist.py not found; the configs are ")
    assert "configs/smlpnet.py" in line and "common.py" not in line
    assert config_file.missing_file(f"{REPO}/configs/smlpnet.py:t") is None
    with pytest.raises(ConfigError, match="^config file configs/nonexist.py not found; "):
        config_file.load("configs/nonexist.py:t", [])


def test_an_override_means_the_same_to_main_py_and_to_the_tools():
    """main.py's --config flag and `config_file.load` (the tools') parse an override by the
    type of its field alike: an int given to a float, absl's lower-case bools, a tuple, a
    string that looks like a number, a placeholder's declared type."""
    spec = f"--config={REPO}/configs/smlpnet.py:demo"
    overrides = [
        "--config.optimizer.lr=1",
        "--config.async_checkpoint=false",
        "--config.model_kwargs.depths=(1, 1)",
        "--config.input.eval_split=123",
        "--config.total_steps=12",
        "--config.data_dir=/tmp/data",
    ]
    by_main = _parse([spec, *overrides])
    by_tools = config_file.load(spec.removeprefix("--config="), overrides)
    assert by_tools.to_dict() == by_main.to_dict() and by_tools.is_locked
    assert by_tools.optimizer.lr == 1.0 and isinstance(by_tools.optimizer.lr, float)
    assert by_tools.input.eval_split == "123" and by_tools.model_kwargs.depths == (1, 1)
    assert by_tools.async_checkpoint is False
    # A run record's config (JSON: no placeholder types) takes the same overrides.
    record = ml_collections.ConfigDict(by_main.to_dict())
    record.unlock()
    record.data_dir = None
    changed = config_file.override(record, ["--config.data_dir=/tmp/x", "--config.seed=3"])
    assert (changed.data_dir, changed.seed, changed.is_locked) == ("/tmp/x", 3, True)
    with pytest.raises(ConfigError, match="unknown config key 'sed' \\(did you mean 'seed'"):
        config_file.override(changed, ["--config.sed=1"])


OVERRIDES = {  # one hyperparameter a family, set from the command line, changes the model
    "smlpnet": "alpha=2",
    "mixer": "channels_mlp_dim=64",
    "convmixer": "kernel_size=3",
    "dynamixer": "mlp_ratio=2.0",
    "permutator": "mlp_ratios=2.0",
    "as_mlp": "mlp_ratio=2.0",
    "hire_mlp": "mlp_ratios=(2,2,2,2)",
    "raft_mlp": "channel_expansion_factor=2",
    "sparse_mlp": "num_channel_experts=2",
}


def _parse(argv: list[str]):
    """main.py's flag parsing (ml_collections' config flag, locked), on fresh flags."""
    from absl import flags
    from ml_collections import config_flags

    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True)
    # ml_collections reads the override flags from sys.argv itself.
    with mock.patch.object(sys, "argv", ["main.py", *argv]):
        values(["main.py", *argv])
    return values.config


@pytest.mark.parametrize("family", sorted(OVERRIDES))
def test_every_familys_hyperparameters_are_overridable_on_the_command_line(family):
    config_file = f"--config={REPO}/configs/{family}.py:demo"
    base = _parse([config_file])
    changed = _parse([config_file, f"--config.model_kwargs.{OVERRIDES[family]}"])
    key = OVERRIDES[family].split("=")[0]
    assert changed.model_kwargs[key] != base.model_kwargs[key]
    assert _params(changed) != _params(base), family


@pytest.mark.parametrize(("family", "variants"), [("raft_mlp", "sml"), ("sparse_mlp", "sbl")])
def test_full_configs_name_registered_models(family, variants):
    for variant in variants:
        assert official_config(family, variant).model in smlp_jax.list_models()
    with pytest.raises(ValueError, match="unknown variant"):
        official_config(family, "xl")
