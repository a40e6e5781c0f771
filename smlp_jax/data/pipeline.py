"""The grain input pipelines: per-process shards of a source -> transformed numpy batches.

Train (infinite): indices of this process's shard (`process_index::process_count`) ->
seeded shuffle, reshuffled every epoch -> decode + train transforms, each example seeded by
(seed, process, position in the stream) -> batches of batch_size // process_count ->
(with `input.repeated_aug`, the indices are DeiT's repeated-augmentation order instead,
this process's rows of each global batch, and examples are seeded by (seed, position in
the global stream): see repeated_aug.py) ->
optional worker processes (`grain` mp_prefetch; with `input.shared_memory` each stacks its
batches straight into shared memory: `_stack_into_shared_memory`). Batching happens before
the workers split the work, so batch t is the same whatever the number of workers or threads.
Yields {"image": float32 (b, S, S, 3), "label": int32 (b,)}. Its state is the batch
position (JSON), so a restored run sees exactly the batches it would have seen.

Eval (finite, one pass): this process's shard in order, padded to the same number of
batches on every process; {"image", "label", "mask": bool (b,)}, mask False on padding
(plus the source's extras, if it declares any: `_EvalExample`).

Unreadable files (corrupt, truncated, not an image): in training the example is replaced by
the next readable one in source order (deterministic, batch size stays fixed); in eval it is
masked out. Each such file is logged once per process by name, and the count is logged at
the end of every epoch / eval pass (`TrainIterator.skipped_total`, `EvalIterable.skipped`).
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

import grain
import jax
import numpy as np
from absl import flags
from grain.multiprocessing import SharedMemoryArray

from smlp_jax.data import decoded_cache, input_plan, repeated_aug, sources, transforms
from smlp_jax.data.base import DataError
from smlp_jax.data.config import check_cache, check_loading, worker_count

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def _warn_unreadable(name: str, error: Exception) -> None:
    if name not in _WARNED:  # once per file and process: a bad file recurs every epoch
        _WARNED.add(name)
        log.warning("Skipping unreadable image %s (%s: %s)", name, type(error).__name__, error)


def _warn_batch_exceeds_split(batch_size: int, num_train: int, name: str) -> None:
    """One warning (per process and dataset) when a batch holds more examples than the
    training split: every image then repeats inside each batch."""
    key = f"batch {batch_size} > {name}"
    if batch_size > num_train and key not in _WARNED:
        _WARNED.add(key)
        log.warning(
            "config.batch_size=%d is larger than the training split (%d images of %s): each "
            "image appears about %.1f times in every batch; lower config.batch_size or add "
            "images.",
            batch_size,
            num_train,
            name,
            batch_size / num_train,
        )


def _processes(process_index, process_count) -> tuple[int, int]:
    if process_index is None or process_count is None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
    return int(process_index), int(process_count)


def local_batch_size(global_batch: int, process_count: int, key: str) -> int:
    """This process's share of a global batch (the one check of that divisibility; the
    trainer checks the device and micro-batch split)."""
    if global_batch <= 0 or global_batch % process_count:
        raise DataError(
            f"config.{key}={global_batch} must be a positive multiple of the number of "
            f"processes ({process_count}): each process loads {key} // process_count examples."
        )
    return global_batch // process_count


def input_settings(config) -> dict:
    """config.input as a plain dict (picklable for workers), tuples restored."""
    cfg = config.input.to_dict()
    for key in ("scale", "ratio", "mean", "std"):
        cfg[key] = tuple(float(v) for v in cfg[key])
    return cfg


def _transform(kind, cfg: dict, image_size: int):
    """`kind(cfg, image_size)`; a bad `config.input` setting is the user's to fix (one line)."""
    try:
        return kind(cfg, image_size)
    except ValueError as err:
        raise DataError(str(err)) from None


class _TrainExample:
    """(position in stream, source index) -> one transformed example; picklable.

    Its rng is seeded by (seed, process, position), or with `global_position` (a map to
    the example's position in the global batch stream) by (seed, that position)."""

    def __init__(self, source, transform, seed: int, process_index: int, global_position=None):
        self.source, self.transform = source, transform
        self.seed, self.process_index = seed, process_index
        self.global_position = global_position

    def _rng(self, position: int) -> np.random.Generator:
        if self.global_position is None:
            return np.random.default_rng((self.seed, self.process_index, position))
        return np.random.default_rng((self.seed, self.global_position(position)))

    def __call__(self, position: int, source_index: int) -> dict:
        index = int(source_index)
        for skipped in range(len(self.source)):
            data, label, name = self.source[index]
            rng = self._rng(int(position))
            try:
                example = self.transform(data, rng)
            except transforms.UNREADABLE_ERRORS as error:
                _warn_unreadable(name, error)
                index = (index + 1) % len(self.source)
                continue
            return {**example, "label": np.int32(label), "_skipped": np.int32(skipped)}
        raise DataError(f"No readable image in {self.source.name}: every file failed to decode.")


class TrainIterator(grain.DatasetIterator):
    """Train batches from position `step` of the (random-access) batch dataset.

    The state is just {"step", "skipped_epoch", "skipped_total"}: batch t is a pure function
    of (config, t), so set_state restarts the grain pipeline at batch `step`. The state is
    therefore independent of the number of worker processes and threads (a run may resume
    with another `input.num_workers`). The pipeline (and its workers) starts on first use.
    A stored state is checked by `check_state` (a checkpoint restore does so before using it).
    """

    STATE_KEYS = ("step", "skipped_epoch", "skipped_total")
    # Far beyond any run, and low enough that a stream position (step x batch) stays within
    # the pipeline's int64 indices.
    MAX_COUNT = 2**48

    def __init__(
        self, batches: grain.MapDataset, cfg: dict, batch: int, shard_size: int, name, source=None
    ):
        super().__init__()
        self._batches, self._cfg = batches, cfg
        # A decoded-image cache in this process (no workers) starts filling with the pipeline.
        self._cache = (
            source
            if isinstance(source, decoded_cache.DecodedCache) and worker_count(cfg) == 0
            else None
        )
        self._batch, self._shard_size, self._name = batch, shard_size, name
        self._iterator = None
        self._step = 0
        self._skipped_epoch = 0
        self.skipped_total = 0

    def __next__(self) -> dict:
        if self._iterator is None:
            self._iterator = iter(_to_iterable(self._batches[self._step :], self._cfg))
            if self._cache is not None:
                self._cache.fill_in_background()
        batch = next(self._iterator)
        skipped = int(np.sum(batch.pop("_skipped")))
        self._skipped_epoch += skipped
        self.skipped_total += skipped
        epoch_before = self._step * self._batch // self._shard_size
        self._step += 1
        if self._step * self._batch // self._shard_size > epoch_before:
            if self._skipped_epoch:
                log.warning(
                    "%s: epoch %d skipped %d unreadable image(s), replaced by the next readable "
                    "one (%d in total so far).",
                    self._name,
                    epoch_before,
                    self._skipped_epoch,
                    self.skipped_total,
                )
            self._skipped_epoch = 0
        return batch

    def get_state(self) -> dict:
        return {
            "step": self._step,
            "skipped_epoch": self._skipped_epoch,
            "skipped_total": self.skipped_total,
        }

    @classmethod
    def check_state(cls, state: Any) -> None:
        """Raises ValueError saying what is wrong unless `state` is one `get_state` returns:
        exactly {"step", "skipped_epoch", "skipped_total"}, integers in [0, 2**48), with
        skipped_epoch <= skipped_total (the epoch's count is part of the total)."""
        if not isinstance(state, dict):
            raise ValueError(f"input-iterator state: a dict expected, got {type(state).__name__}.")
        if set(state) != set(cls.STATE_KEYS):
            missing = [k for k in cls.STATE_KEYS if k not in state]
            unknown = sorted(str(k) for k in state if k not in cls.STATE_KEYS)
            raise ValueError(
                f"input-iterator state: keys {', '.join(cls.STATE_KEYS)} expected"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
                + "."
            )
        for key in cls.STATE_KEYS:
            value = state[key]
            integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if not integer or not 0 <= value < cls.MAX_COUNT:
                raise ValueError(
                    f"input-iterator state: {key}={value!r}, an integer in [0, 2**48) expected."
                )
        if state["skipped_epoch"] > state["skipped_total"]:
            raise ValueError(
                f"input-iterator state: skipped_epoch={state['skipped_epoch']} exceeds "
                f"skipped_total={state['skipped_total']}, which includes it."
            )

    def set_state(self, state: dict) -> None:
        """Continues at the batch `state` names (a `get_state()`); ValueError if it is not one."""
        self.check_state(state)
        self._close_pipeline()
        self._step = int(state["step"])
        self._skipped_epoch = int(state["skipped_epoch"])
        self.skipped_total = int(state["skipped_total"])

    def _close_pipeline(self) -> None:
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None

    def close(self) -> None:
        """Stops read-ahead threads, worker processes and the decoded-image cache's fill."""
        self._close_pipeline()
        if self._cache is not None:
            self._cache.stop()
        super().close()


def _to_iterable(dataset: grain.MapDataset, cfg: dict) -> grain.IterDataset:
    check_loading(cfg)  # the trainer checked already; a library caller maybe not
    read = grain.ReadOptions(
        num_threads=int(cfg["num_threads"]),  # >= 1: config.check_loading
        prefetch_buffer_size=int(cfg["prefetch"]),
    )
    iterable = dataset.to_iter_dataset(read)
    workers = worker_count(cfg)
    if workers > 0:
        # grain reads absl flags when it starts workers; outside an absl app (notebooks, a
        # user's own loop) they are unparsed, and the defaults are what we want.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        if _stacks_in_shared_memory(cfg):
            iterable = iterable.map(_stack_into_shared_memory)
        iterable = iterable.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=workers,
                per_worker_buffer_size=int(cfg["prefetch"]),
            )
        )
    return iterable


def _stacks_in_shared_memory(cfg: dict) -> bool:
    """Whether worker processes stack batches straight into shared memory
    (`input.shared_memory`, with at least one worker)."""
    return bool(cfg["shared_memory"]) and worker_count(cfg) > 0


def _batch_function(cfg: dict):
    """The batch op's function: grain's stacking (None), or with `_stacks_in_shared_memory`
    the examples kept apart (`list`), stacked by `_stack_into_shared_memory` instead."""
    return list if _stacks_in_shared_memory(cfg) else None


def _stack_into_shared_memory(examples: list[dict]) -> dict:
    """A batch's examples -> the batch, each array stacked straight into shared memory.

    The worker's last op before grain's mp_prefetch, which then sends the
    `SharedMemoryArray` by its name instead of copying the batch into a new block (the
    trainer process maps it either way). grain's own switch, `enable_shared_memory_output`,
    stacks in the batch op, before the worker's read-ahead threads: the blocks buffered
    there when a worker stops (close, resume) stay in /dev/shm until the program exits.
    """
    batch = {}
    for key in examples[0]:
        first = np.asarray(examples[0][key])
        values = [example[key] for example in examples]
        if first.dtype.hasobject or first.size == 0:
            batch[key] = np.stack(values)
        else:
            out = SharedMemoryArray((len(examples), *first.shape), first.dtype)
            batch[key] = np.stack(values, out=out)
    return batch


def _cached(source, cfg: dict):
    """`source` behind a decoded-image cache when `input.cache_decoded_mb` asks for one
    (and it is not behind one already); a budget that is not one is one line first."""
    check_cache(cfg)
    budget = int(cfg.get("cache_decoded_mb", 0))
    if not budget or isinstance(source, decoded_cache.DecodedCache):
        return source
    return decoded_cache.DecodedCache(source, budget * decoded_cache.MB)


def open_eval_source(config, source=None):
    """config's eval split (or `source`), opened once for several passes: behind a
    decoded-image cache with `input.cache_decoded_mb`, so a later evaluation decodes
    nothing the earlier ones kept (give it to `create_eval_iterator` as `source`)."""
    if source is None:
        source = sources.open_split(config, sources.eval_split(config))
    return _cached(source, input_settings(config))


def repeated_aug_replicas(config) -> int:
    """`input.repeated_aug_replicas`, 0 meaning one replica per process."""
    return int(config.input.repeated_aug_replicas) or jax.process_count()


def train_steps_per_epoch(config, num_train: int) -> int:
    """Batches in one epoch of the train stream (with repeated augmentation, the official
    sampler's epoch: each replica's `floor(N // 256 * 256 / R)` samples, last batch dropped)."""
    repeats = int(config.input.repeated_aug)
    if repeats:
        return repeated_aug.check_settings(
            num_train, int(config.batch_size), repeats, repeated_aug_replicas(config)
        )
    return max(num_train // int(config.batch_size), 1)


def _shard_stream(config, source, process_index, process_count):
    """Shuffled per-process shard, repeated: -> (index stream, examples an epoch)."""
    indices = grain.MapDataset.range(len(source))[process_index::process_count]
    shard_size = len(indices)
    if config.input.shuffle:
        indices = indices.shuffle(seed=int(config.seed))
    return indices.repeat(None), shard_size


def create_train_iterator(config, *, process_index=None, process_count=None) -> TrainIterator:
    """Infinite iterator of this process's train batches; see the module docstring."""
    process_index, process_count = _processes(process_index, process_count)
    batch = local_batch_size(int(config.batch_size), process_count, "batch_size")
    cfg = input_settings(config)
    source = _cached(sources.open_split(config, sources.train_split(config)), cfg)
    if len(source) < process_count:
        raise DataError(f"{source.name}: {len(source)} examples for {process_count} processes.")
    _warn_batch_exceeds_split(int(config.batch_size), len(source), source.name)
    global_position = None
    if int(cfg["repeated_aug"]):
        ra = repeated_aug.RepeatedAugIndices(
            len(source),
            int(config.batch_size),
            int(cfg["repeated_aug"]),
            repeated_aug_replicas(config),
            process_index,
            process_count,
        )
        epoch_size = ra.steps_per_epoch * batch
        stream = grain.MapDataset.range(epoch_size).repeat(None).map_with_index(ra)
        global_position = ra.global_position
    else:
        stream, epoch_size = _shard_stream(config, source, process_index, process_count)
    examples = stream.map_with_index(
        _TrainExample(
            source,
            # What the host does of the work (the trainer's plan: same config, same source).
            input_plan.plan(config, getattr(source, "max_image_side", None)).host_transform(),
            int(config.seed),
            process_index,
            global_position,
        )
    )
    batches = examples.batch(batch, drop_remainder=True, batch_fn=_batch_function(cfg))
    return TrainIterator(batches, cfg, batch, epoch_size, source.name, source)


class _EvalExample:
    """Padded position -> example with mask; positions past the shard are padding.

    A source that declares `extra_spec` ({name: (shape, dtype)}) yields
    (bytes, label, name, {name: array}) and each example carries those arrays too (zeros on
    padding): ImageNet-ReaL's multi-hot labels, ImageNet-C's group (data/eval_sets.py)."""

    def __init__(self, source, transform, process_index: int, process_count: int, size: int):
        self.source, self.transform = source, transform
        self.process_index, self.process_count = process_index, process_count
        self.image_size = size
        self.extra_spec = dict(getattr(source, "extra_spec", {}))

    def __call__(self, position: int) -> dict:
        index = self.process_index + int(position) * self.process_count
        extras = {key: np.zeros(shape, dtype) for key, (shape, dtype) in self.extra_spec.items()}
        if index < len(self.source):
            data, label, name, *more = self.source[index]
            try:
                image = self.transform(data)
                return {
                    "image": image,
                    "label": np.int32(label),
                    "mask": np.True_,
                    "_skipped": 0,
                    **extras,
                    **(more[0] if more and self.extra_spec else {}),
                }
            except transforms.UNREADABLE_ERRORS as error:
                _warn_unreadable(name, error)
                skipped = 1
        else:
            label, skipped = 0, 0
        return {
            "image": np.zeros((self.image_size, self.image_size, 3), np.float32),
            "label": np.int32(label),
            "mask": np.False_,
            "_skipped": skipped,
            **extras,
        }


class EvalIterable:
    """One pass over this process's eval shard per `iter()`; `len()` batches on every
    process; `skipped` counts unreadable (masked-out) files of the last pass."""

    def __init__(self, dataset: grain.MapDataset, cfg: dict, num_batches: int, name: str):
        self._dataset, self._cfg = dataset, cfg
        self._num_batches, self._name = num_batches, name
        self.skipped = 0

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self):
        self.skipped = 0
        iterator = iter(_to_iterable(self._dataset, self._cfg))
        try:
            for batch in iterator:
                self.skipped += int(np.sum(batch.pop("_skipped")))
                yield batch
        finally:  # stops prefetch threads / worker processes also when the caller breaks early
            iterator.close()
        if self.skipped:
            log.warning("%s eval: %d unreadable image(s) masked out.", self._name, self.skipped)


def create_eval_iterator(
    config, *, source=None, process_index=None, process_count=None
) -> EvalIterable:
    """This process's eval shard exactly once, padded; see the module docstring. `source`:
    an already opened source to read instead of config's eval split (the evaluators' test
    sets, smlp_jax/data/eval_sets.py); config still gives the transform and batch size."""
    process_index, process_count = _processes(process_index, process_count)
    batch = local_batch_size(int(config.eval_batch_size), process_count, "eval_batch_size")
    cfg = input_settings(config)
    if source is None:
        source = sources.open_split(config, sources.eval_split(config))
    source = _cached(source, cfg)
    if len(source) == 0:
        raise DataError(f"The eval split of {source.name} is empty; set config.input.eval_split.")
    largest_shard = math.ceil(len(source) / process_count)
    num_batches = math.ceil(largest_shard / batch)
    examples = grain.MapDataset.range(num_batches * batch).map(
        _EvalExample(
            source,
            _transform(transforms.EvalTransform, cfg, int(config.image_size)),
            process_index,
            process_count,
            int(config.image_size),
        )
    )
    batches = examples.batch(batch, batch_fn=_batch_function(cfg))
    return EvalIterable(batches, cfg, num_batches, source.name)
