"""Repeated augmentation (Hoffer et al. 2020), exactly as DeiT's `RASampler`.

DeiT (and SPACH, its fork) draw each epoch's training samples per replica (GPU) with
`RASampler(num_replicas=R, rank=r)`: a permutation of the N examples from
`torch.randperm(N)` seeded with the epoch number, each index repeated `repeats` times in
a row, padded from the start to a multiple of R, then every R-th entry from r; of these a
replica keeps the first `floor(N // 256 * 256 / R)` (so an epoch holds about N / repeats
distinct images, each `repeats` times, on different replicas when R >= repeats).

Here the R replicas are virtual and the global batch t of an epoch is their batches t
side by side: rows [r * B/R, (r + 1) * B/R) are replica r's examples
[t * B/R, (t + 1) * B/R) of its list (each replica's loader drops its last partial batch).
Process p of P loads rows [p * B/P, (p + 1) * B/P). So batch t is a pure function of
(N, B, R, repeats, t): the same for any number of processes, devices or workers, and a
resumed run continues exactly. With R equal to the official GPU count, every replica's
stream is the official one (checked against timm's release of the sampler).

`torch_randperm` reproduces PyTorch's CPU `randperm` (a Fisher-Yates pass drawing
`mt19937() % (n - i)`, the algorithm for n < 2**32 / 20) without PyTorch.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from smlp_jax.data.base import DataError


def torch_randperm(n: int, seed: int) -> np.ndarray:
    """`torch.randperm(n, generator=torch.Generator().manual_seed(seed))` on CPU, int64."""
    if n >= 2**32 // 20:
        raise ValueError(f"torch_randperm: n={n} is past PyTorch's small-n algorithm.")
    generator = np.random.MT19937()
    generator._legacy_seeding(seed)  # mt19937's init_genrand(seed), as torch.manual_seed
    draws = generator.random_raw(max(n - 1, 0)).astype(np.int64)
    offsets = (draws % (n - np.arange(max(n - 1, 0)))).tolist()
    perm = list(range(n))
    for i, z in enumerate(offsets):
        j = i + z
        perm[i], perm[j] = perm[j], perm[i]
    return np.asarray(perm, np.int64)


def samples_per_replica(num_examples: int, num_replicas: int, selected_round: int = 256) -> int:
    """RASampler's `num_selected_samples`: floor(N // round * round / R)."""
    return int(math.floor(num_examples // selected_round * selected_round / num_replicas))


def epoch_lists(
    num_examples: int, epoch: int, num_replicas: int, repeats: int = 3, selected_round: int = 256
) -> np.ndarray:
    """(R, samples_per_replica): row r is what replica r reads in `epoch`, in order
    (`RASampler(num_replicas=R, rank=r).__iter__()` after `set_epoch(epoch)`)."""
    repeated = np.repeat(torch_randperm(num_examples, epoch), repeats)
    per_replica = math.ceil(num_examples * repeats / num_replicas)
    total = per_replica * num_replicas
    if total > len(repeated):  # padded from the start to a multiple of R
        repeated = np.concatenate([repeated, repeated[: total - len(repeated)]])
    # Entry i goes to replica i % R: row r of the (per_replica, R) reshape, transposed.
    lists = repeated[:total].reshape(per_replica, num_replicas).T
    return np.ascontiguousarray(
        lists[:, : samples_per_replica(num_examples, num_replicas, selected_round)]
    )


def check_settings(num_examples: int, batch_size: int, repeats: int, replicas: int) -> int:
    """-> batches per epoch; one clear error when the settings cannot work."""
    if repeats < 1:
        raise DataError(f"config.input.repeated_aug={repeats}; use 0 (off) or a count >= 1.")
    if replicas < 1 or batch_size % replicas:
        raise DataError(
            f"config.input.repeated_aug_replicas={replicas} does not divide config.batch_size="
            f"{batch_size}: each of the replicas takes batch_size / replicas examples a step; "
            "use a divisor of the batch size (the official runs: their GPU count)."
        )
    per_replica = samples_per_replica(num_examples, replicas)
    steps = per_replica // (batch_size // replicas)
    if steps < 1:
        raise DataError(
            f"repeated augmentation: {num_examples} examples give each of {replicas} replicas "
            f"{per_replica} samples an epoch, fewer than its batch of {batch_size // replicas}; "
            "lower config.batch_size or config.input.repeated_aug_replicas."
        )
    return steps


class RepeatedAugIndices:
    """Position in this process's example stream -> source index (picklable, per-epoch
    lists cached). Position q is row q % b of local batch q // b, b = B / P."""

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        repeats: int,
        replicas: int,
        process_index: int,
        process_count: int,
    ):
        self.num_examples, self.batch_size = num_examples, batch_size
        self.repeats, self.replicas = repeats, replicas
        self.process_index, self.process_count = process_index, process_count
        self.steps_per_epoch = check_settings(num_examples, batch_size, repeats, replicas)
        self.local_batch = batch_size // process_count
        self.replica_batch = batch_size // replicas
        self._lists: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()  # grain's reader threads share this object

    def lists(self, epoch: int) -> np.ndarray:
        """`epoch_lists` of `epoch` (the last two epochs cached)."""
        with self._lock:
            if epoch not in self._lists:
                if len(self._lists) >= 2:
                    self._lists.pop(min(self._lists))
                self._lists[epoch] = epoch_lists(
                    self.num_examples, epoch, self.replicas, self.repeats
                )
            return self._lists[epoch]

    def __call__(self, position: int, _element=None) -> int:
        """(grain's map_with_index passes the position and the range's element.)"""
        step, row = divmod(int(position), self.local_batch)
        epoch, step_in_epoch = divmod(step, self.steps_per_epoch)
        replica, k = divmod(self.global_row(row), self.replica_batch)
        return int(self.lists(epoch)[replica, step_in_epoch * self.replica_batch + k])

    def global_row(self, row: int) -> int:
        """This process's batch row -> row of the global batch."""
        return self.process_index * self.local_batch + row

    def global_position(self, position: int) -> int:
        """Position in this process's stream -> position in the global batch stream."""
        step, row = divmod(int(position), self.local_batch)
        return step * self.batch_size + self.global_row(row)

    def __getstate__(self):  # workers rebuild their own lists
        return {k: v for k, v in self.__dict__.items() if k not in ("_lists", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state, _lists={}, _lock=threading.Lock())
