"""`config.init_from` with official weights for another class count: the classifier is
found in every family's official layout and starts fresh; everything else is imported."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import converter
from smlp_jax.convert import mixer as mixer_convert
from smlp_jax.models.registry import get_entry
from smlp_jax.train import init_from, trainer
from tests.train.tiny import REPO, grey_class_folder, tiny_config

FAMILIES_WITH_WEIGHTS = sorted(
    {get_entry(name).family for name in smlp_jax.list_models()} - {"sparse_mlp"}
)


def _classifier_keys(family: str, rules_of=None) -> tuple[list[str], set[int], object]:
    name = smlp_jax.list_models(family)[0]
    model = nnx.eval_shape(lambda: smlp_jax.create_model(name, num_classes=7, rngs=0))
    rules = (rules_of or converter(family).official_rules)(model)
    keys = init_from.official_head_keys(model, rules)
    return keys, {id(rules[k][0]) for k in keys}, model


@pytest.mark.parametrize("family", FAMILIES_WITH_WEIGHTS)
def test_official_head_keys_are_the_classifier_in_every_family(family):
    # Official names differ ("head.weight", "mlp_head.0.weight", "classifier.weight"):
    # matching them by name missed sMLPNet's and RaftMLP's heads.
    keys, variables, model = _classifier_keys(family)
    assert len(keys) == 2, keys
    assert variables == {id(model.head.kernel), id(model.head.bias)}
    assert any(k.endswith("weight") for k in keys) and any(k.endswith("bias") for k in keys)


def test_official_head_keys_in_the_vit_jax_mixer_layout():
    keys, variables, model = _classifier_keys("mixer", mixer_convert.vit_jax_rules)
    assert sorted(keys) == ["head/bias", "head/kernel"]
    assert variables == {id(model.head.kernel), id(model.head.bias)}


def test_init_from_official_smlpnet_weights_for_three_classes(demo_data_dir, tmp_path, capsys):
    """The 10-class official-layout sMLPNet fixture into a 3-class image folder."""
    with np.load(REPO / "tests/fixtures/smlpnet_tiny.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arch = json.loads(str(arrays.pop("config")))
    weights = {k.removeprefix("weights/"): v for k, v in arrays.items() if k.startswith("weights/")}
    weights_file = tmp_path / "smlpnet_official.npz"
    np.savez(weights_file, **weights)

    config = tiny_config(
        demo_data_dir,
        dataset=f"folder:{grey_class_folder(tmp_path / 'images')}",
        init_from=str(weights_file),
        image_size=arch["image_size"],
        eval_batch_size=6,
        **{
            "model_kwargs.dim": arch["dim"],
            "model_kwargs.depths": tuple(arch["depths"]),
            "input.eval_split": "val",
        },
    )
    setup = trainer.build(config)
    info, make_state, abstract, shardings = (
        setup.info, setup.make_state, setup.abstract, setup.shardings
    )  # fmt: skip
    assert info.num_classes == 3
    fresh = trainer.create_state(make_state, shardings)
    state = init_from.load_model_weights(config, fresh, abstract, info.num_classes)
    out = capsys.readouterr().out
    assert "class count differs; mlp_head.0.weight, mlp_head.0.bias start fresh" in out

    # Everything but the head is the official weights' (as our 10-class import has it).
    reference = smlp_jax.create_model(
        "smlpnet_t",
        num_classes=arch["num_classes"],
        image_size=arch["image_size"],
        dim=arch["dim"],
        depths=tuple(arch["depths"]),
        pretrained=weights,
    )
    ref_params = nnx.to_pure_dict(nnx.state(reference, nnx.Param))
    params = state["params"]  # plain nested dicts (train.state.split)
    body = {k: v for k, v in ref_params.items() if k != "head"}
    close = jax.tree.map(
        lambda a, b: np.allclose(np.asarray(a), np.asarray(b), atol=0, rtol=0),
        body,
        {k: params[k] for k in body},
    )
    assert all(jax.tree.leaves(close)) and len(jax.tree.leaves(close)) > 20
    head_fresh = jax.tree.map(np.array_equal, params["head"], fresh["params"]["head"])
    assert all(jax.tree.leaves(head_fresh))
    assert params["head"]["kernel"].shape == (8 * arch["dim"], 3)

    scalars = trainer.evaluate_only(config, str(tmp_path / "eval"))
    assert np.isfinite(scalars["eval/loss"]) and 0.0 <= scalars["eval/top1"] <= 1.0
