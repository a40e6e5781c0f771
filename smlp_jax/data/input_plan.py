"""The input plan: where each part of the train input's work runs, decided once from the config.

`config.input.on_device` says how much of the work after decoding the train step does:

    ""                    the host decodes, crops, resizes and augments
                          (transforms.TrainTransform): {"image": float32 (S, S, 3)}
    "augment"             the host decodes, crops and resizes: {"image": uint8 (S, S, 3)};
                          the step flips, RandAugments, normalises and erases
                          (device_augment.DeviceAugment)
    "resize_and_augment"  the host only decodes: {"image": uint8 (P, P, 3) zero-padded,
                          "resize_box": float32 (4,), "image_hw": int32 (2,)}; the step
                          resizes the crop (device_resize.py), then augments

`plan(config)` validates the combination once (one line, `DataError`) and gives what each
side needs: the host transform (one batch form, a dict), the example spec, and the device
function the train step and the FLOP count both run. The run record keeps `describe()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smlp_jax.data import device_augment, device_resize, transforms
from smlp_jax.data.base import DataError
from smlp_jax.data.config import ON_DEVICE


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """Where the train input's work runs (see the module docstring)."""

    on_device: str  # one of ON_DEVICE
    image_size: int  # S
    padded: int  # P, the padded side with "resize_and_augment"; 0 otherwise
    cfg: dict = dataclasses.field(repr=False, compare=False)  # config.input as a plain dict

    @property
    def augments_on_device(self) -> bool:
        return self.on_device != ""

    @property
    def resizes_on_device(self) -> bool:
        return self.on_device == "resize_and_augment"

    def host_transform(self) -> transforms.TrainTransform:
        """(encoded bytes, rng) -> one example as a dict (`example_spec`)."""
        cfg = dict(self.cfg, resize_max=self.padded) if self.resizes_on_device else self.cfg
        return transforms.TrainTransform(cfg, self.image_size)

    def example_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """The shape and dtype of each array of one example the host sends (label aside)."""
        s, p = self.image_size, self.padded
        if self.resizes_on_device:
            return {
                "image": jax.ShapeDtypeStruct((p, p, 3), np.uint8),
                "resize_box": jax.ShapeDtypeStruct((4,), np.float32),
                "image_hw": jax.ShapeDtypeStruct((2,), np.int32),
            }
        dtype = np.uint8 if self.augments_on_device else np.float32
        return {"image": jax.ShapeDtypeStruct((s, s, 3), dtype)}

    def check_batch(self, batch: dict[str, Any]) -> None:
        """A `DataError` (at trace time) for a batch that is not what this plan's host side
        sends: e.g. float images fed to a step that augments on the device."""
        for name, spec in self.example_spec().items():
            got = batch.get(name)
            shape = tuple(got.shape[1:]) if got is not None else None
            if self.resizes_on_device and name == "image" and shape is not None:
                # Any canvas that holds a crop: the plan sizes it to the data (`plan`), and a
                # step built from the config alone need not know the dataset.
                side = shape[0]
                fits = (
                    shape == (side, side, 3) and self.image_size <= side <= self.cfg["resize_max"]
                )
                shape = spec.shape if fits else shape
            if got is None or jnp.dtype(got.dtype) != jnp.dtype(spec.dtype) or shape != spec.shape:
                wanted = ", ".join(
                    f"{k} {jnp.dtype(v.dtype).name} (B, {', '.join(map(str, v.shape))})"
                    for k, v in self.example_spec().items()
                )
                found = ", ".join(
                    f"{k} {jnp.dtype(v.dtype).name} {tuple(v.shape)}"
                    for k, v in sorted(batch.items())
                    if hasattr(v, "dtype")
                )
                raise DataError(
                    f"config.input.on_device={self.on_device!r} (config.image_size="
                    f"{self.image_size}) takes batches of {wanted}; got {found}: feed the "
                    "batches of data.create_train_iterator with the same config."
                )

    def device_function(self) -> Callable[[jax.Array, dict], jax.Array] | None:
        """`(key, batch) -> float32 (B, S, S, 3)`: what runs in the train step before Mixup
        (the crop's resize, then the augmentation); None when the host did it all."""
        if not self.augments_on_device:
            return None
        augment = device_augment.DeviceAugment(self.cfg, self.image_size)
        size, interpolation = self.image_size, str(self.cfg["interpolation"])

        def run(key, batch):
            self.check_batch(batch)
            images = batch["image"]
            if self.resizes_on_device:
                images = device_resize.resize_batch(
                    images, batch["resize_box"], batch["image_hw"], size, interpolation
                )
            return augment(key, images)

        return run

    def describe(self) -> dict[str, Any]:
        """The plan as the run record keeps it."""
        spec = {k: [list(v.shape), jnp.dtype(v.dtype).name] for k, v in self.example_spec().items()}
        return {"on_device": self.on_device, "example": spec}


def check(cfg: dict, image_size: int) -> None:
    """ValueError (one line) unless `cfg` (config.input) is a plan the pipeline can run."""
    on_device = cfg.get("on_device", "")
    if on_device not in ON_DEVICE:
        choices = ", ".join(repr(m) for m in ON_DEVICE)
        raise ValueError(f"config.input.on_device={on_device!r}; use one of {choices}.")
    if on_device:
        device_augment.check_device_input(cfg)
    if on_device == "resize_and_augment":
        if cfg["interpolation"] not in device_resize.FILTERS:
            raise ValueError(
                f"config.input.on_device='resize_and_augment' resizes with "
                f"{' or '.join(device_resize.FILTERS)}, not interpolation="
                f"{cfg['interpolation']!r}; use config.input.on_device='augment'."
            )
        if int(cfg["resize_max"]) < int(image_size):
            raise ValueError(
                f"config.input.resize_max={cfg['resize_max']} is below config.image_size="
                f"{image_size}: the padded images must hold a crop; raise it (the default, "
                "640, holds 640x480 photos)."
            )


def plan(config: Any, max_image_side: int | None = None) -> InputPlan:
    """The input plan of `config` (its `input` and `image_size`); `DataError` if invalid.

    `max_image_side`: the longest side of the train images when the source declares it
    (`DatasetInfo.max_image_side`). With "resize_and_augment" the padded canvas P is sized
    to the data: the train size with the "simple" preset (the host resizes whole images
    anyway), else the longest image side (at least the train size) when known, capped by
    `resize_max`: 28-px digits travel as 32 x 32, not 640 x 640. A declared side above
    `resize_max` is refused (the host would resize those images, the work this plan moves).
    """
    cfg = config.input.to_dict() if hasattr(config.input, "to_dict") else dict(config.input)
    for key in ("scale", "ratio", "mean", "std"):  # a config rebuilt from JSON has lists
        cfg[key] = tuple(float(v) for v in cfg[key])
    size = int(config.image_size)
    try:
        transforms.check_input(cfg)
        check(cfg, size)
    except ValueError as err:
        raise DataError(str(err)) from None
    on_device = cfg.get("on_device", "")
    padded = 0
    if on_device == "resize_and_augment":
        padded = int(cfg["resize_max"])
        if cfg["preset"] == "simple":
            padded = size
        elif max_image_side:
            if int(max_image_side) > padded:
                raise DataError(
                    f"config.input.resize_max={padded} is below the dataset's largest image "
                    f"side ({int(max_image_side)} px), so those images would be resized on the "
                    f"host; raise config.input.resize_max to {int(max_image_side)} or use "
                    "config.input.on_device='augment'."
                )
            padded = max(int(max_image_side), size)
    return InputPlan(on_device, size, padded, cfg)
