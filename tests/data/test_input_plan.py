"""The input plan (`smlp_jax.data.input_plan`): one key, `config.input.on_device`, decides
where the train input's work runs; the host transform's examples match the plan's spec in
every mode, and the device function turns them into the float32 images the model takes."""

import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from smlp_jax import data


def _config(on_device: str, size: int = 32, **changes) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict({"image_size": size})
    config.input = data.default_input_config()
    config.input.on_device = on_device
    config.input.resize_max = 96
    for key, value in changes.items():
        config.input[key] = value
    return config


def _jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(width)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize("on_device", data.input_plan.ON_DEVICE)
def test_each_mode_sends_what_its_spec_says_and_the_device_finishes_it(on_device):
    plan = data.input_plan.plan(_config(on_device))
    assert plan.on_device == on_device and plan.image_size == 32
    spec = plan.example_spec()
    example = plan.host_transform()(_jpeg(80, 60), np.random.default_rng(0))
    assert set(example) == set(spec)  # one batch form: a dict, whatever the mode
    for name, want in spec.items():
        assert example[name].shape == want.shape and example[name].dtype == want.dtype
    batch = {k: jnp.asarray(np.stack([v, v])) for k, v in example.items()}
    device = plan.device_function()
    if on_device == "":
        assert device is None and example["image"].dtype == np.float32
        return
    images = jax.jit(device)(jax.random.key(0), batch)
    assert images.shape == (2, 32, 32, 3) and images.dtype == jnp.float32
    assert plan.describe() == {
        "on_device": on_device,
        "example": {k: [list(v.shape), np.dtype(v.dtype).name] for k, v in spec.items()},
    }


def test_a_batch_of_another_mode_is_one_line_at_trace_time():
    plan = data.input_plan.plan(_config("resize_and_augment"))
    crops = {"image": jax.ShapeDtypeStruct((4, 32, 32, 3), np.uint8)}  # the "augment" form
    with pytest.raises(data.DataError) as err:
        jax.eval_shape(plan.device_function(), jax.random.key(0), crops)
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        "config.input.on_device='resize_and_augment' (config.image_size=32) takes batches of "
        "image uint8 (B, 96, 96, 3), resize_box float32 (B, 4), image_hw int32 (B, 2); got "
        "image uint8 (4, 32, 32, 3)"
    ), message


@pytest.mark.parametrize(
    ("on_device", "changes", "expected"),
    [
        ("host", {}, "config.input.on_device='host'; use one of '', 'augment', "),
        ("augment", {"randaugment": "rand-m9", "interpolation": "random"}, "warps with bicubic"),
        ("resize_and_augment", {"resize_max": 16}, "config.input.resize_max=16 is below"),
        ("", {"crop_pct": 1.5}, "config.input.crop_pct must be in (0, 1]"),
    ],
)
def test_a_plan_that_cannot_run_is_one_data_error(on_device, changes, expected):
    with pytest.raises(data.DataError) as err:
        data.input_plan.plan(_config(on_device, **changes))
    assert expected in str(err.value) and "\n" not in str(err.value)
