"""The summary tool: exact parameters, MACs within 1% of the official figures."""

import jax
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.tools import summary
from tests.models.test_param_counts import PARAM_COUNTS

# Official GMACs (SPACH README / paper); our matmul + conv MACs at 224, batch 1.
OFFICIAL_GMACS = {"smlpnet_t": 4.989, "smlpnet_b": 13.987}


@pytest.mark.parametrize("name", sorted(OFFICIAL_GMACS))
def test_smlpnet_macs_and_params(name):
    s = summary.summarize(name, xla_cost=False)
    assert s.total_params == PARAM_COUNTS[name]
    assert sum(s.params_by_group.values()) == s.total_params
    assert [g for g in s.params_by_group if g.startswith("stage")] == [
        f"stage {i}" for i in range(4)
    ]
    assert abs(s.macs / 1e9 - OFFICIAL_GMACS[name]) / OFFICIAL_GMACS[name] < 0.01


def test_depthwise_multiplies_are_counted():
    """The depthwise 3x3 (shifted multiply-adds) adds exactly 9 * N^2 * C per block."""
    tiny = dict(image_size=32, num_classes=10, dim=8, depths=(1, 1, 1, 1), xla_cost=False)
    with_dw = summary.summarize("smlpnet_t", **tiny).macs
    grids, channels = (8, 4, 2, 1), (8, 16, 32, 64)
    depthwise = sum(9 * g * g * c for g, c in zip(grids, channels))
    # Analytic count of everything else: stems, axial mixing, fuse, channel MLP, head.
    rest = 8 * 8 * 8 * 48 + sum(g * g * c * (c // 2) * 4 for g, c in zip(grids[1:], channels[1:]))
    rest += sum(
        2 * g**3 * c + 3 * g * g * c * c + 6 * g * g * c * c for g, c in zip(grids, channels)
    )
    rest += 64 * 10
    assert with_dw == rest + depthwise


def test_groups_follow_the_module_path():
    """Lists of block lists group by index unless they are `stages` (with `stems`)."""
    # DynaMixer keeps the official flat `network` list: block lists and downsamplers.
    model = nnx.eval_shape(lambda: smlp_jax.create_model("dynamixer_s", num_classes=10))
    groups = summary.parameter_groups(model)
    network = [f"network.{i}" for i in range(5)]
    assert list(groups) == ["head", *network, "norm", "stem"]
    assert groups["head"] == 384 * 10 + 10
    assert groups["network.1"] == 2 * 2 * 192 * 384 + 384  # the first downsampler
    assert sum(groups.values()) == sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_cli_prints_table_and_rejects_unknown_models(capsys):
    argv = ["smlpnet_t", "--image-size", "32", "--num-classes", "10", "--no-xla"]
    assert summary.main(argv) == 0
    out = capsys.readouterr().out
    assert "total" in out and "MACs" in out
    assert summary.main(["smlpnet_q"]) == 2
    assert "unknown model 'smlpnet_q'" in capsys.readouterr().err


def test_train_step_flops_are_printed_and_about_three_forwards(capsys):
    """Backward costs about twice the forward: XLA's train-step count is 2.5-3.5x it."""
    tiny = dict(image_size=32, num_classes=10, dim=8, depths=(1, 1, 1, 1))
    s = summary.summarize("smlpnet_t", **tiny)
    assert 2.5 < s.xla_train_flops / s.xla_flops < 3.5, (s.xla_flops, s.xla_train_flops)
    # The MFU count (2 x the step's matmul/conv MACs): at most three forwards (no gradient
    # for the images), and on the CPU backend close to XLA's count of all ops.
    assert 2.5 < s.train_flops / (2 * s.macs) <= 3.0, (s.macs, s.train_flops)
    assert 0.85 < s.train_flops / s.xla_train_flops <= 1.0, (s.train_flops, s.xla_train_flops)
    assert summary.main(["smlpnet_t", "--image-size", "32", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "train step (fwd + bwd)" in out and "train step model FLOPs (MFU)" in out
