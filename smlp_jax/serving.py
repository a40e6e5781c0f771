"""Models out for serving: the eval-mode forward as a serialized `jax.export` artifact.

    exported = export_model(model)      # images (b, S, S, 3) float32 -> logits (b, classes)
    save(exported, "served/smlpnet_t", weights=serving_weights(model), model_name="smlpnet_t")
    forward = load("served/smlpnet_t")  # runs without the model's Python code
    logits = forward(images)            # any batch size: `b` is a symbolic dimension

What is exported: the model in eval mode (BatchNorm's running statistics, no dropout or
drop path), as StableHLO, inputs normalised NHWC images as the data pipeline's eval
transform makes them (short side to floor(S / crop_pct), centre crop S, `(x / 255 - mean)
/ std`); `serving.json` beside it says which mean, std, crop_pct and filter.

The weights are an argument of the exported function, not part of it: `exported.call(
weights, images)` with `weights = serving_weights(model)` (every parameter and BatchNorm
statistic, keyed by its path in the model, `"stages/0/blocks/1/mix_w/kernel"`), saved as
`weights.npz` beside the artifact. One artifact then serves any weights of that
architecture, and the StableHLO stays small. `bake_weights=True` makes them constants of
the artifact instead (one self-contained file; `exported.call(images)`).

A saved folder holds:
    forward.jaxexport  `exported.serialize()`: StableHLO plus the calling convention
    weights.npz        the weights argument (absent when baked in)
    serving.json       model name, image size, num_classes, mean/std, crop_pct, filter,
                       input and output shapes, platforms, jax/flax versions, and the
                       sha256 of the other two files
`load` treats the folder as untrusted: a damaged or changed file (its sha256), a sidecar
that is not our JSON object, an unreadable artifact, object arrays or shapes the file
cannot hold in weights.npz are a one-line `ServingError` before anything is run.

The artifact is platform-specific: it runs on the platforms it was lowered for
(`platforms=`, default the backend JAX runs on here; `("cpu", "cuda")` lowers one artifact
for both). The CPU-only workarounds (`smlp_jax.models.xla_cpu`) are in it only when the CPU
is one of its platforms; the depthwise convolution's form (`smlp_jax.models.depthwise`:
shifted multiply-adds on a CPU host, XLA's grouped convolution elsewhere) is chosen by the
backend JAX runs on while exporting. An artifact for CUDA exported on a CPU host computes
the same values in that form, so export on the target's kind of host for its fastest form.
Later JAX versions load an artifact for about 6 months after it was made (jax.export's
backward-compatibility window; past it they refuse it): keep the model to export again.

`export_onnx` writes the same forward as an ONNX model (weights as initializers), through
the optional `jax2onnx` package.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smlp_jax.errors import UserError
from smlp_jax.models import registry, xla_cpu
from smlp_jax.models.npz import read_npz

FORMAT = "smlp_jax.serving/1"
FORWARD_FILE = "forward.jaxexport"
WEIGHTS_FILE = "weights.npz"
SIDECAR_FILE = "serving.json"
BATCH_DIM = "b"
_MAX_SIDECAR_BYTES = 1_000_000


class ServingError(UserError, ValueError):
    """A serving artifact that cannot be written, read or run as asked; shown as one line."""


def _eval_copy(model: nnx.Module) -> nnx.Module:
    """`model` in eval mode, leaving the caller's module in its own mode (same arrays)."""
    copy = nnx.merge(*nnx.split(model))
    copy.eval()
    return copy


def _leaf_name(path: tuple) -> str:
    return "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def _pure_forward(model: nnx.Module) -> tuple[Callable, dict[str, np.ndarray]]:
    """-> (forward(weights, images) -> logits, the model's weights) for the eval-mode model.

    The rng streams stay constants of `forward` (eval mode draws nothing); everything else
    (parameters, BatchNorm statistics, MoE auxiliary-loss slots) is in `weights`."""
    graphdef, rngs, state = nnx.split(_eval_copy(model), nnx.RngState, ...)
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(state)
    names = [_leaf_name(path) for path, _ in leaves_with_paths]
    if len(set(names)) != len(names):
        raise ServingError("the model's variable paths are not unique; cannot name its weights.")
    weights = {name: np.asarray(leaf) for name, (_, leaf) in zip(names, leaves_with_paths)}

    def forward(weights: dict[str, jax.Array], images: jax.Array) -> jax.Array:
        # A module merged inside the trace: a forward that writes variables (MoE's
        # auxiliary loss) writes into this copy, and only the logits come out.
        # jnp.asarray: baked-in numpy weights would be written in place (read-only).
        state = jax.tree.unflatten(treedef, [jnp.asarray(weights[name]) for name in names])
        return nnx.merge(graphdef, rngs, state)(images)

    return forward, weights


def serving_weights(model: nnx.Module) -> dict[str, np.ndarray]:
    """The weights argument of `export_model(model)`'s artifact: `{path: array}` of every
    parameter and statistic (float32 parameters, as the model keeps them)."""
    return _pure_forward(model)[1]


def _image_spec(model: nnx.Module, image_size: int | None, batch: int | None, dtype: Any):
    size = image_size or getattr(model, "image_size", None)
    if not size:
        raise ServingError(
            f"{type(model).__name__} does not record its image size; pass image_size=."
        )
    in_chans = getattr(model, "in_chans", 3)
    if batch is None:
        (batch,) = jax.export.symbolic_shape(BATCH_DIM)
    elif not isinstance(batch, int) or batch <= 0:
        raise ServingError(f"batch={batch!r}: give a positive int, or None (symbolic).")
    return jax.ShapeDtypeStruct((batch, size, size, in_chans), jnp.dtype(dtype))


def _workarounds_for(platforms: Sequence[str] | None):
    """The CPU workarounds only where the artifact may run on the CPU."""
    if platforms is None or "cpu" in platforms:
        return contextlib.nullcontext()
    return xla_cpu.options(residual_grad=False, depthwise_output=False)


def export_model(
    model: nnx.Module,
    *,
    image_size: int | None = None,
    batch: int | None = None,
    dtype: Any = jnp.float32,
    platforms: Sequence[str] | None = None,
    bake_weights: bool = False,
) -> jax.export.Exported:
    """The eval-mode forward of `model` as a `jax.export.Exported`.

    `exported.call(weights, images) -> logits` with `weights = serving_weights(model)`
    (`exported.call(images)` with `bake_weights=True`); images `(B, S, S, 3)` -> logits
    `(B, num_classes)`.

    Args:
      model: a model of this package (any mode: a copy in eval mode is exported).
      image_size: the input side S (default: the model's own, `model.image_size`).
      batch: a fixed batch size, or None for a symbolic one (`jax.export.symbolic_shape`:
        one artifact serves every batch size).
      dtype: the images' dtype in the artifact's signature (the model casts them to its
        computation dtype).
      platforms: what to lower for, e.g. `("cpu", "cuda")` (default: JAX's backend here).
      bake_weights: the weights as constants of the artifact instead of an argument.
    """
    forward, weights = _pure_forward(model)
    images = _image_spec(model, image_size, batch, dtype)
    if bake_weights:
        fn, args = jax.jit(lambda x: forward(weights, x)), (images,)
    else:
        spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in weights.items()}
        fn, args = jax.jit(forward), (spec, images)
    with _workarounds_for(platforms):
        return jax.export.export(fn, platforms=platforms)(*args)


def _takes_weights(exported: jax.export.Exported) -> bool:
    return len(exported.in_avals) > 1


def _expected_weights(exported: jax.export.Exported) -> dict[str, Any]:
    """{name: ShapedArray} of the weights argument `exported` takes."""
    (weights, _), _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    return weights


def _check_weights(exported: jax.export.Exported, weights: dict[str, Any]) -> None:
    expected = _expected_weights(exported)
    missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or extra:
        raise ServingError(
            f"the weights do not fit the artifact: {len(missing)} missing "
            f"({', '.join(missing[:3])}), {len(extra)} unexpected ({', '.join(extra[:3])})."
        )
    for name, aval in expected.items():
        shape, dtype = tuple(np.shape(weights[name])), jnp.result_type(weights[name])
        if shape != aval.shape or dtype != aval.dtype:
            raise ServingError(
                f"weight {name} is {dtype}{list(shape)}; the artifact takes "
                f"{aval.dtype}{list(aval.shape)}."
            )


def _metadata(exported: jax.export.Exported, model_name: str, cfg_overrides: dict) -> dict:
    given = {k: v for k, v in cfg_overrides.items() if v is not None}
    if len(given) < len(cfg_overrides):  # the rest from the model's pretrained configuration
        cfg = registry.pretrained_cfg(model_name)
        given = {k: getattr(cfg, k) for k in cfg_overrides} | given
    images, (logits,) = exported.in_avals[-1], exported.out_avals
    return {
        "format": FORMAT,
        "model": model_name,
        "image_size": int(images.shape[1]),
        "num_classes": int(logits.shape[-1]),
        "mean": [float(v) for v in given["mean"]],
        "std": [float(v) for v in given["std"]],
        "crop_pct": float(given["crop_pct"]),
        "interpolation": given["interpolation"],
        "input": {
            "shape": [d if isinstance(d, int) else str(d) for d in images.shape],
            "dtype": str(images.dtype),
            "layout": "NHWC, normalised: (x / 255 - mean) / std",
        },
        "output": {
            "shape": [d if isinstance(d, int) else str(d) for d in logits.shape],
            "dtype": str(logits.dtype),
            "meaning": "logits",
        },
        "weights": WEIGHTS_FILE if _takes_weights(exported) else "baked into the artifact",
        "platforms": list(exported.platforms),
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
    }


def save(
    exported: jax.export.Exported,
    path: str | Path,
    *,
    model_name: str,
    weights: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
) -> Path:
    """Writes `exported` into the folder `path` (created; its files replaced) and returns it.

    `weights`: `serving_weights(model)`, needed unless the weights are baked in. `mean`,
    `std`, `crop_pct`, `interpolation` (the eval preprocessing the sidecar records) default
    to `model_name`'s pretrained configuration (`smlp_jax.models.pretrained_cfg`); pass the
    training config's `input.*` for a model trained here with other ones."""
    if _takes_weights(exported) and weights is None:
        raise ServingError("this artifact takes its weights as an argument: pass weights=.")
    if not _takes_weights(exported) and weights is not None:
        raise ServingError("this artifact has its weights baked in; weights= is not used.")
    cfg = dict(mean=mean, std=std, crop_pct=crop_pct, interpolation=interpolation)
    metadata = _metadata(exported, model_name, cfg)
    if weights is not None:
        _check_weights(exported, weights)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FORWARD_FILE).write_bytes(exported.serialize())
    if weights is not None:
        np.savez(folder / WEIGHTS_FILE, **{k: np.asarray(v) for k, v in weights.items()})
    elif (folder / WEIGHTS_FILE).exists():
        (folder / WEIGHTS_FILE).unlink()  # a stale argument file would contradict the sidecar
    # `load` checks these before it deserializes or reads anything else.
    files = [FORWARD_FILE] + ([WEIGHTS_FILE] if weights is not None else [])
    metadata["sha256"] = {name: _sha256(folder / name) for name in files}
    (folder / SIDECAR_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ServedModel:
    """A loaded artifact: `served(images) -> logits`, with `metadata` (serving.json),
    `exported` and `weights` (None when baked in). Calls are jitted: one compilation per
    batch size."""

    def __init__(
        self, exported: jax.export.Exported, weights: dict | None, metadata: dict[str, Any]
    ):
        self.exported, self.weights, self.metadata = exported, weights, metadata
        self._call = jax.jit(exported.call)
        (self.input_aval,) = exported.in_avals[-1:]

    def __call__(self, images: Any) -> jax.Array:
        shape = tuple(np.shape(images))
        expected = self.input_aval.shape
        if len(shape) != len(expected) or shape[1:] != tuple(expected[1:]):
            raise ServingError(
                f"images of shape {shape}; this artifact takes "
                f"{[d if isinstance(d, int) else str(d) for d in expected]} (NHWC, normalised)."
            )
        if isinstance(expected[0], int) and shape[0] != expected[0]:
            raise ServingError(f"batch {shape[0]}: this artifact was exported for {expected[0]}.")
        dtype = jnp.result_type(images)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ServingError(
                f"{dtype} images: this artifact takes float images normalised as "
                "(x / 255 - mean) / std, with the mean and std in serving.json."
            )
        images = jnp.asarray(images, self.input_aval.dtype)
        if self.weights is None:
            return self._call(images)
        return self._call(self.weights, images)


def load(path: str | Path) -> ServedModel:
    """The artifact `save` wrote into the folder `path`, ready to call on this host."""
    folder = Path(path)
    sidecar = folder / SIDECAR_FILE
    if not sidecar.is_file() or not (folder / FORWARD_FILE).is_file():
        raise ServingError(
            f"{folder}: no serving artifact ({SIDECAR_FILE} and {FORWARD_FILE}); write one "
            "with smlp_jax.serving.save or python -m smlp_jax.tools.export_serving."
        )
    metadata = _read_sidecar(sidecar)
    _check_files(folder, metadata)
    try:
        exported = jax.export.deserialize(bytearray((folder / FORWARD_FILE).read_bytes()))
    except Exception as err:  # noqa: BLE001 - any failure to parse the file is the file's
        first = (str(err).splitlines() or [""])[0]
        raise ServingError(
            f"{folder / FORWARD_FILE} is not a readable jax.export artifact (damaged or "
            f"truncated? {type(err).__name__}: {first}); export it again."
        ) from None
    here = jax.export.default_export_platform()
    if here not in exported.platforms:
        raise ServingError(
            f"{folder} was exported for {', '.join(exported.platforms)}, and JAX runs on "
            f"{here} here: export it again with platforms=(..., {here!r})."
        )
    weights = None
    if _takes_weights(exported):
        # Declared shapes checked against the file's bytes first; object arrays refused.
        arrays = read_npz(folder / WEIGHTS_FILE, ServingError)
        weights = {name: jnp.asarray(array) for name, array in arrays.items()}
        _check_weights(exported, weights)
    return ServedModel(exported, weights, metadata)


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    """serving.json as a dict of our format, or a one-line `ServingError`."""
    if sidecar.stat().st_size > _MAX_SIDECAR_BYTES:
        raise ServingError(f"{sidecar}: {sidecar.stat().st_size:,} bytes; ours are about 1 kB.")
    try:
        metadata = json.loads(sidecar.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ServingError(f"{sidecar} is not valid JSON ({err}).") from None
    if not isinstance(metadata, dict):
        raise ServingError(
            f"{sidecar} holds a JSON {type(metadata).__name__}, not the object "
            "smlp_jax.serving.save writes."
        )
    if metadata.get("format") != FORMAT:
        raise ServingError(f"{sidecar}: format {metadata.get('format')!r}, not {FORMAT!r}.")
    return metadata


def _check_files(folder: Path, metadata: dict[str, Any]) -> None:
    """The artifact's files against the sha256 digests serving.json records (artifacts
    saved before digests were recorded have none to check)."""
    digests = metadata.get("sha256", {})
    if not isinstance(digests, dict) or not set(digests) <= {FORWARD_FILE, WEIGHTS_FILE}:
        raise ServingError(f"{folder / SIDECAR_FILE}: sha256 is not {{file: digest}}.")
    for name, digest in digests.items():
        path = folder / name
        if not path.is_file():
            raise ServingError(f"{folder}: {name} is missing (serving.json lists it).")
        if _sha256(path) != digest:
            raise ServingError(
                f"{path} does not match the sha256 serving.json records: it was damaged or "
                "changed after it was saved; export it again."
            )


# jax2onnx logs a traceback for each of its example plugins whose package (equinox, dm_pix)
# is absent, and onnx_ir a line for each shape tensor it leaves untyped: noise for a
# conversion the tests check by its logits.
_ONNX_NOISE = ("jax2onnx.plugins.plugin_system", "onnx_ir.serde")


@contextlib.contextmanager
def _quiet(names: Sequence[str]):
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(
    model: nnx.Module,
    path: str | Path,
    *,
    image_size: int | None = None,
    batch: int | None = None,
    opset: int = 23,
) -> Path:
    """Writes the eval-mode forward as an ONNX model (weights as initializers) to `path`.

    Input `images` `(B, S, S, 3)` float32 NHWC, normalised as for `export_model` (B
    symbolic unless `batch`), output `logits`. Traced with the CPU workarounds off
    (`smlp_jax.models.xla_cpu`: they are XLA-specific); a depthwise convolution is still
    in the form of the backend JAX runs on (on the CPU: shifted multiply-adds, not a
    grouped Conv). Needs `jax2onnx` (and `onnx`, `onnxruntime` to run the file)."""
    try:
        from jax2onnx import to_onnx  # lazy: optional dependency
    except ImportError as err:
        raise ServingError(
            f"ONNX export needs jax2onnx ({err}); see docs/models.md, 'For serving'."
        ) from None
    forward, weights = _pure_forward(model)
    spec = _image_spec(model, image_size, batch, jnp.float32)
    shape = ["B" if not isinstance(d, int) else d for d in spec.shape]
    with xla_cpu.options(residual_grad=False, depthwise_output=False), _quiet(_ONNX_NOISE):
        to_onnx(
            lambda images: forward(weights, images),
            [tuple(shape)],
            model_name=type(model).__name__,
            opset=opset,
            input_names=["images"],
            output_names=["logits"],
            return_mode="file",
            output_path=str(path),
        )
    return Path(path)
