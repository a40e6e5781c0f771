"""Tiny stand-ins for the ImageNet test sets, in their real formats, built offline in a test.

tfds: each builder subclasses the registered tfds builder (`tfds.builder_cls(name)`), so the
prepared folder has the builder's own name, version, builder config and features (what
`tfds.builder(name, data_dir=...)` reads back), and only the examples are ours.
Folders: the layouts of the released archives (smlp_jax/data/eval_sets.py lists them).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import tensorflow_datasets as tfds
from PIL import Image

from smlp_jax.data import eval_sets


def jpeg(colour, size=(20, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _prepare(builder) -> None:
    tfds.disable_progress_bar()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )


def tfds_set(data_dir, name: str, split: str, examples: list[dict], config: str | None = None):
    """Prepares tfds `name` (builder config `config`) in `data_dir` (array_record) with
    `examples` (feature dicts without the image: a small JPEG is added) as `split`."""
    base = tfds.builder_cls(name)
    side = 224 if name == "imagenet2012_corrupted" else 20  # its Image feature is 224x224

    class Tiny(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate()}

        def _generate(self):
            for i, example in enumerate(examples):
                yield i, {"image": jpeg((7 * i % 256, 40, 90), (side, side)), **example}

    Tiny.name = name
    _prepare(Tiny(config=config, data_dir=str(data_dir), file_format="array_record"))


def wnid(index: int) -> str:
    return eval_sets.imagenet_synsets()[index]


def image_folder(root: Path, counts: dict[str, int], ext: str = "png", size: int = 12) -> Path:
    """root/<folder>/<i>.<ext>, `counts[folder]` images in each."""
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (size, size), (30 * i % 256, 60, 120)).save(
                root / folder / f"{i}.{ext}"
            )
    return root


def real_folder(root: Path, images: list[tuple[int, list[int]]]) -> tuple[Path, Path]:
    """An ImageNet val folder (<wnid>/ILSVRC2012_val_<n>.JPEG, image n with original label
    images[n-1][0]) and its real.json (images[n-1][1] the ReaL labels of image n)."""
    for number, (label, _) in enumerate(images, start=1):
        folder = root / "val" / wnid(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"ILSVRC2012_val_{number:08d}.JPEG").write_bytes(jpeg((number, 50, 50)))
    real = root / "real.json"
    real.write_text(json.dumps([labels for _, labels in images]))
    return root / "val", real
