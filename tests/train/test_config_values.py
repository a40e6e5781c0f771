"""Every family config resolves to the values it is pinned to: for each variant and `demo`
of `configs/<family>.py` and its named configs in EXTRAS, the keys whose value differs
from `base_config()` (the model's hyperparameters, `model_kwargs`, all of them) are exactly those in
tests/fixtures/config_values.json, at exactly those values (`repr`: a tuple stays a tuple,
300 is not 300.0). A helper of `configs/common.py` that moves a family's value fails here;
a key added to `base_config()` that no family sets does not.

After a deliberate change to a recipe, rewrite the fixture and review its diff:

    .venv/bin/python -m tests.train.test_config_values
"""

from __future__ import annotations

import importlib
import json
import sys

import ml_collections
import pytest

from tests.train.tiny import REPO

FIXTURE = REPO / "tests" / "fixtures" / "config_values.json"

VARIANTS = {
    "as_mlp": ("t", "s", "b"),
    "convmixer": ("1536_20", "768_32", "1024_20", "256_8"),
    "dynamixer": ("s", "m", "l"),
    "hire_mlp": ("t", "s", "b", "l"),
    "mixer": ("s32", "s16", "b32", "b16", "l32", "l16"),
    "permutator": ("s14", "s7", "m7", "l7"),
    "raft_mlp": ("s", "m", "l"),
    "smlpnet": ("t", "s", "b"),
    "sparse_mlp": ("s", "b", "l"),
}
# Named configs beside the variants and `demo` (fine-tuning, head-only, linear probe).
EXTRAS = {
    "dynamixer": ("finetune_s",),
    "mixer": ("finetune_b16", "finetune_l16"),
    "permutator": ("finetune_s7",),
    "raft_mlp": ("finetune_s", "finetune_m", "finetune_l"),
    "smlpnet": ("finetune_demo", "head_only_demo", "linear_probe_demo"),
}
ABSENT = "<absent>"


def _leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = repr(value)
    return out


def _configs(name: str):
    sys.path.insert(0, str(REPO))
    return importlib.import_module(f"configs.{name}")


def resolved(family: str, variant: str) -> dict[str, str]:
    """`configs/<family>.py:<variant>`'s keys that differ from base_config() (repr of each
    value; ABSENT for a base key the config lacks); also that it is locked."""
    config = _configs(family).get_config(variant)
    assert config.is_locked, (family, variant)
    want, base = _leaves(config), _leaves(_configs("common").base_config())
    changed = {key: value for key, value in want.items() if base.get(key) != value}
    changed.update({key: ABSENT for key in base if key not in want})
    return dict(sorted(changed.items()))


def snapshot() -> dict[str, dict[str, str]]:
    return {
        f"{family}:{variant}": resolved(family, variant)
        for family, variants in VARIANTS.items()
        for variant in (*variants, "demo", *EXTRAS.get(family, ()))
    }


def test_every_family_config_resolves_to_its_pinned_values():
    pinned = json.loads(FIXTURE.read_text())
    got = snapshot()
    assert sorted(got) == sorted(pinned)
    for name, values in got.items():
        assert values == pinned[name], name


@pytest.mark.parametrize("family", sorted(VARIANTS))
def test_the_pinned_variants_are_all_the_familys_variants(family):
    """A variant added to a family file is added here (and to the fixture) too."""
    with pytest.raises(ValueError, match="unknown variant") as err:
        _configs(family).get_config("no-such-variant")
    assert str(err.value).endswith(f"use {', '.join(VARIANTS[family])} or demo.")


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(snapshot(), indent=1) + "\n")
    print(f"wrote {FIXTURE}")
