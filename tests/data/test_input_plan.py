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


def test_the_padded_canvas_is_sized_to_the_data():
    """With "resize_and_augment", images travel padded to what the data needs: the train
    size for the simple preset (the host resizes whole images), the longest declared image
    side (at least the train size), else `resize_max`; a declared side above `resize_max`
    is refused in one line."""
    config = _config("resize_and_augment")
    assert data.input_plan.plan(config).padded == 96  # sizes unknown: resize_max
    assert data.input_plan.plan(config, max_image_side=28).padded == 32  # at least S
    assert data.input_plan.plan(config, max_image_side=60).padded == 60
    assert data.input_plan.plan(config, max_image_side=96).padded == 96
    with pytest.raises(data.DataError) as err:
        data.input_plan.plan(config, max_image_side=4000)
    assert str(err.value) == (
        "config.input.resize_max=96 is below the dataset's largest image side (4000 px), so "
        "those images would be resized on the host; raise config.input.resize_max to 4000 or "
        "use config.input.on_device='augment'."
    )
    simple = _config("resize_and_augment", preset="simple")
    assert data.input_plan.plan(simple, max_image_side=4000).padded == 32
    assert data.input_plan.plan(_config("augment"), max_image_side=28).padded == 0


def test_the_demo_digits_travel_at_the_train_size_with_the_resize_on_the_device(demo_data_dir):
    """The trap of a fixed 640 canvas for 28-px digits: the demo's batches are (S, S), and
    the step built from the config alone takes them."""
    from tests.train.tiny import tiny_config

    config = tiny_config(demo_data_dir, **{"input.on_device": "resize_and_augment"})
    info = data.get_dataset_info(config)
    assert info.max_image_side == 28
    plan = data.input_plan.plan(config, info.max_image_side)
    batch = next(data.create_train_iterator(config, process_index=0, process_count=1))
    assert batch["image"].shape == (64, 16, 16, 3) and batch["image"].dtype == np.uint8
    images = jax.jit(data.input_plan.plan(config).device_function())(
        jax.random.key(0), {k: jnp.asarray(v) for k, v in batch.items()}
    )
    assert plan.padded == 16 and images.shape == (64, 16, 16, 3)
