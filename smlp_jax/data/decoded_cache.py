"""Decoded images kept in memory (`config.input.cache_decoded_mb`): each decoded once.

For small datasets (the demo's 28x28 digits, CIFAR-sized images) decoding is most of an
example's cost, and on a small host the train step waits for it: the demo's in-process
pipeline spent 250-300 us an example, about half of it reading the record, parsing it and
decoding the PNG (benchmarks/README, "Decoded images kept in memory"). `DecodedCache` wraps a
source and hands out, in place of an image's encoded bytes, its decoded RGB `PIL.Image`,
filled on first use and kept until `budget_bytes` of pixels are held; images past the
budget are decoded each time, as without the cache (but at full size: for a large JPEG
dataset the cache is no help, and without the draft a slower one).

What the transforms compute does not change: `transforms.open_image` passes a decoded
image through, and the cached image is exactly what `transforms.decode` gives at full size
(without the JPEG draft). So a JPEG's training crop comes from its full-size pixels whether
it is cached or not: with the cache on, `transforms.TrainTransform` drafts no crop, so a
cached and an uncached example see the same pixels and the batches do not depend on what
was cached first (threads, workers, a resumed run).

Each process (the trainer, every grain worker) fills its own cache: pickling a
`DecodedCache` ships the source, not the images.
"""

from __future__ import annotations

import threading
from typing import Any

from PIL import Image

from smlp_jax.data import transforms
from smlp_jax.data.base import DataError

MB = 1 << 20


class DecodedCache:
    """`source` whose items carry a decoded RGB image instead of the encoded bytes.

    `source[index]` is `(bytes, label, name, *extras)`; this yields `(image, label, name,
    *extras)` with `image` a loaded RGB `PIL.Image` when the bytes decode (else the bytes
    themselves, so the transform raises its own error for the file and the pipeline skips
    or masks it as it would without the cache). Attributes other than items and length
    (`name`, `num_classes`, `classes`, `extra_spec`...) are the source's.
    """

    def __init__(self, source: Any, budget_bytes: int):
        self.source = source
        self.budget_bytes = int(budget_bytes)
        self._reset()

    def _reset(self) -> None:
        self._items: dict[int, tuple] = {}  # index -> (image, label, name, *extras)
        self.cached_bytes = 0
        self._lock = threading.Lock()  # grain's read threads fill the cache concurrently
        self._filler: threading.Thread | None = None
        self._stop = threading.Event()

    def fill_in_background(self) -> None:
        """Starts (once) a thread that decodes the images in index order until the budget
        is full or every image is held: while the train step compiles, the first epoch's
        images get decoded too, not only the later epochs'. `stop()` ends it."""
        if self._filler is not None:
            return
        self._filler = threading.Thread(target=self._fill, name="decoded-cache", daemon=True)
        self._filler.start()

    def _fill(self) -> None:
        for index in range(len(self.source)):
            if self._stop.is_set() or self.cached_bytes >= self.budget_bytes:
                return
            try:
                self[index]
            except DataError:  # a file it cannot read: the pipeline's own read says so
                return

    def stop(self) -> None:
        """Ends the background fill, if any (what it cached stays)."""
        self._stop.set()
        if self._filler is not None:
            self._filler.join()

    def __len__(self) -> int:
        return len(self.source)

    def __getattr__(self, name: str) -> Any:
        if name == "source":  # not set yet (unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.source, name)

    def __getstate__(self) -> dict:
        return {"source": self.source, "budget_bytes": self.budget_bytes}

    def __setstate__(self, state: dict) -> None:
        self.source, self.budget_bytes = state["source"], state["budget_bytes"]
        self._reset()

    def __getitem__(self, index: int) -> tuple:
        index = int(index)
        item = self._items.get(index)
        if item is not None:
            return item
        data, *rest = self.source[index]
        image = self._decode(data)
        if image is None:
            return (data, *rest)
        item = (image, *rest)
        size = image.width * image.height * len(image.getbands())
        with self._lock:
            if index not in self._items and self.cached_bytes + size <= self.budget_bytes:
                self._items[index] = item
                self.cached_bytes += size
        return item

    @staticmethod
    def _decode(data: bytes) -> Image.Image | None:
        """`data` decoded to RGB at full size as `transforms.decode` does; None if it fails."""
        try:
            img = transforms.open_image(data)
            img, _ = transforms.decode(img, (0, 0, *img.size), img.size, draft=False)
            img.load()
        except transforms.UNREADABLE_ERRORS:
            return None
        return img
