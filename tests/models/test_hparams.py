"""Every registered hyperparameter has a declared type and range, checked once in the
registry for every family (`smlp_jax.models.hparams`): nonsense is one line naming the
hyperparameter and what it accepts, raised before anything is built."""

import math
import time

import pytest

import smlp_jax
from smlp_jax.models import HyperparameterError, get_entry, hyperparameter_ranges, registry
from smlp_jax.models.hparams import MAX_STAGES, Hyper

# One registered name a family (nothing is built: any variant will do).
FAMILY_MODELS = {}
for _name in smlp_jax.list_models():
    FAMILY_MODELS.setdefault(get_entry(_name).family, _name)


def bad_elements(spec: Hyper) -> list:
    """Values of the element type `spec` refuses: out of range, of another type."""
    if spec.kind == "bool":
        return [1, "yes", None]
    if spec.kind == "choice":
        return ["no_such_choice", 1, None]
    values = ["8", None, True, math.nan]
    if spec.kind == "int":
        values.append(1.5)
    if spec.low is not None:
        values.append(spec.low if spec.low_open else spec.low - 1)
    if spec.high is not None:
        values.append(spec.high if spec.high_open else spec.high + 1)
    return values


def good_element(spec: Hyper):
    if spec.kind == "bool":
        return True
    if spec.kind == "choice":
        return spec.choices[0]
    low = spec.low + (1 if spec.low_open else 0)
    return int(low) if spec.kind == "int" else float(low)


def bad_values(spec: Hyper) -> list:
    """Values `spec` refuses, whatever its shape (scalar, per stage, a list)."""
    elements = [e for e in bad_elements(spec) if not (e is None and spec.optional)]
    if spec.shape == "scalar":
        return elements
    good = good_element(spec)
    if spec.nested:  # one non-empty list of elements per stage
        return [[[good], [e]] for e in elements] + [[[good], []], [good, good], "8"]
    values = [[good, e] for e in elements if e is not None] + ["8", {"a": 1}]
    if spec.shape != "list":
        values += [[], [good] * (MAX_STAGES + 1)]
    if spec.shape == "per_stage":
        values.append(good)  # a scalar where one value per stage is needed
    return values


CASES = [
    pytest.param(name, key, value, id=f"{name}-{key}-{value!r}"[:80])
    for name in FAMILY_MODELS.values()
    for key, spec in hyperparameter_ranges(name).items()
    for value in bad_values(spec)
]


def test_every_constructor_hyperparameter_of_every_family_is_declared():
    for name in FAMILY_MODELS.values():
        build = get_entry(name).build
        declared = hyperparameter_ranges(name)
        taken = registry._constructor_defaults(build, every=True)
        assert set(taken) == set(declared), name
        for key, value in registry.hyperparameters(name).items():
            assert declared[key].accepts(value), (name, key, value)


@pytest.mark.parametrize("name, key, value", CASES)
def test_a_value_outside_the_declared_range_is_one_line_naming_it(name, key, value):
    spec = hyperparameter_ranges(name)[key]
    overrides = {key: value}
    start = time.perf_counter()
    with pytest.raises(HyperparameterError) as err:
        # create_model's own: None is the default, image_size has its own check first.
        if key in ("num_classes", "image_size"):
            smlp_jax.models.make_model(name, **overrides)
        else:
            smlp_jax.create_model(name, **overrides)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: ")
    if "per-stage hyperparameters" not in message:  # [] or 9 stages: the length line
        assert f"{key}={value!r} is not accepted; {key} takes {spec.describe()}." in message
    assert time.perf_counter() - start < 2.0  # refused before anything is built


INT_1_256 = "takes an int from 1 to 256."


@pytest.mark.parametrize(
    "name, overrides, line",
    [
        (
            "mixer_s16",
            dict(num_blocks=-2),
            f"num_blocks=-2 is not accepted; num_blocks {INT_1_256}",
        ),
        ("mixer_s16", dict(num_blocks=0), f"num_blocks=0 is not accepted; num_blocks {INT_1_256}"),
        ("convmixer_256_8", dict(depth=-1), f"depth=-1 is not accepted; depth {INT_1_256}"),
        (
            "smlpnet_t",
            dict(depths=(2, -1, 2, 2)),
            "depths=(2, -1, 2, 2) is not accepted; depths takes one int from 1 to 256 per "
            "stage (1 to 8 stages).",
        ),
        ("smlpnet_t", dict(dim=0), "dim=0 is not accepted; dim takes an int from 1 to 65536."),
        (
            "convmixer_256_8",
            dict(dim=0),
            "dim=0 is not accepted; dim takes an int from 1 to 65536.",
        ),
        ("smlpnet_t", dict(depths=[1000000, 1]), "depths=[1000000, 1] is not accepted"),
        ("mixer_s16", dict(drop_path_rate=1.0), "drop_path_rate takes a float in [0, 1)."),
        ("sparse_mlp_s", dict(channel_expert_dim=0), "an int from 1 to 65536 (or None)."),
    ],
)
def test_the_issues_nonsense_sizes_are_refused(name, overrides, line):
    with pytest.raises(HyperparameterError) as err:
        smlp_jax.create_model(name, **overrides)
    assert f"{name}: {line}" in str(err.value) or line in str(err.value)
    assert "\n" not in str(err.value)


def test_per_stage_hyperparameters_need_one_entry_per_stage():
    with pytest.raises(HyperparameterError) as err:
        smlp_jax.create_model("hiremlp_t", layers=(2, 2, 2))  # embed_dims & co. have 4
    assert str(err.value) == (
        "hiremlp_t: the per-stage hyperparameters need one entry per stage each; layers has "
        "3, embed_dims has 4, mlp_ratios has 4, pixel has 4, step_stride has 4, "
        "step_dilation has 4."
    )


def test_an_unknown_hyperparameter_is_a_user_error_and_a_type_error():
    with pytest.raises(TypeError, match="unknown hyperparameter") as err:
        smlp_jax.create_model("mixer_s16", depths=(2, 2))
    assert isinstance(err.value, HyperparameterError)


def test_a_family_without_declared_ranges_is_refused_at_registration():
    entry = get_entry("convmixer_256_8")

    class Undeclared(entry.build):
        HYPERPARAMETERS = {k: v for k, v in entry.build.HYPERPARAMETERS.items() if k != "depth"}

    with pytest.raises(ValueError, match="declares no type and range for depth"):
        registry.register_model("undeclared_convmixer", family="convmixer", build=Undeclared)
    assert "undeclared_convmixer" not in registry._REGISTRY
