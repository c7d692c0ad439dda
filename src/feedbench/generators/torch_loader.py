"""``torch_dataloader``: keyed's batches from a torch ``DataLoader``, the loader users pick instead.

A map-style dataset of whole batches (``batch_size=None``), indexed by ``(epoch, index)`` keys
that a sampler hands out: torch's own documented pattern for epoch-aware data (as
``DistributedSampler.set_epoch``), since the dataset copies in persistent workers never see the
main process change. The loader counts the epochs it delivered whole and the sampler keys the
next pass with it.

The ``workers`` axis maps to ``num_workers``: ``use_multiprocessing=True`` gives that many
persistent worker processes (seeded in ``worker_init_fn`` as torch documents); ``workers=1``
without it is the serial reference (``num_workers=0``, the main process). torch has no thread
workers, so threads are reported not applicable.
"""

from __future__ import annotations

import functools

from feedbench.core.spec import Built, Spec, own_workers_not_applicable
from feedbench.generators.keying import KeyedBatches

NO_THREADS = (
    "a torch DataLoader has no thread workers: num_workers starts processes "
    "(use_multiprocessing=True), num_workers=0 reads in the main process (workers=1)"
)
NO_QUEUE = "a torch DataLoader prefetches prefetch_factor batches per worker; max_queue_size is Keras's"


def not_applied(spec: Spec) -> dict[str, str]:
    """The settings of ``spec`` a DataLoader cannot run, each with the reason."""
    return own_workers_not_applicable(spec, NO_QUEUE, NO_THREADS)


def seed_worker(worker_id: int) -> None:
    """torch's recipe (docs, "Randomness in multi-process data loading"): NumPy and ``random``
    seeded from the worker's torch seed. keyed's draws need none of it; user code often does."""
    import random

    import numpy as np
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class _EpochKeys:
    """A sampler of ``(epoch, index)`` keys for the loader's current epoch."""

    def __init__(self, per_epoch: int):
        self.per_epoch = per_epoch
        self.epoch = 0

    def __len__(self):
        return self.per_epoch

    def __iter__(self):
        epoch = self.epoch
        return iter([(epoch, index) for index in range(self.per_epoch)])


@functools.cache
def _loader_class():
    import torch.utils.data

    class EpochCountingLoader(torch.utils.data.DataLoader):
        """A DataLoader whose epoch is the number of epochs it *delivered* whole: a partial pass
        (Keras's TensorFlow adapter peeks at two batches for the output signature) does not count,
        whatever the workers prefetched, and a consumer that takes exactly an epoch's batches
        (jax, torch) moves it on."""

        def __iter__(self):
            return self._counting(super().__iter__())

        def _counting(self, iterator):
            delivered = 0
            for batch in iterator:
                delivered += 1
                if delivered == self.sampler.per_epoch:
                    self.sampler.epoch += 1  # before the next pass asks the sampler for keys
                yield batch

    return EpochCountingLoader


class _KeyedBatchDataset:
    """Map-style: ``dataset[(epoch, index)]`` is keyed's batch; its length is an epoch's batches
    (Keras reads the epoch's length from it)."""

    def __init__(self, batches: KeyedBatches, per_epoch: int):
        self.batches = batches
        self.per_epoch = per_epoch

    def __len__(self):
        return self.per_epoch

    def __getitem__(self, key):
        return self.batches(*key)


def build(spec: Spec, source) -> Built:
    import torch

    num_workers, skipped = (spec.workers if spec.use_multiprocessing else 0), not_applied(spec)
    batches = KeyedBatches(source, spec.batch_size, spec.seed, spec.shuffle, spec.work)
    dataset = _KeyedBatchDataset(batches, spec.batches_per_epoch)  # map-style: DataLoader needs only __getitem__
    generator = torch.Generator().manual_seed(spec.seed)
    loader = _loader_class()(
        dataset,
        batch_size=None,  # the dataset gives whole batches
        sampler=_EpochKeys(spec.batches_per_epoch),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=generator,
    )
    return Built(
        spec,
        "torch_dataloader",
        loader,
        source,
        not_applicable=skipped,
        applied_settings={"workers": max(num_workers, 1), "use_multiprocessing": num_workers > 0},
        release=lambda: _stop_workers(loader),
    )


def _stop_workers(loader) -> None:
    """Persistent workers live as long as the loader's iterator; end them now, not at GC."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None
