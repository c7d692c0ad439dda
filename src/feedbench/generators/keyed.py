"""``keyed``: the best-practice PyDataset.

It never writes into its source, and every random draw (shuffle order,
flips, brightness) comes from a generator keyed by (seed, epoch, batch
index). So the stream is reproducible and identical under any
``workers`` / ``use_multiprocessing`` setting, while augmentation still
differs from epoch to epoch.

The epoch advances in ``on_epoch_end``, not ``on_epoch_begin``: Keras starts
(and, with multiprocessing, forks) its workers *before* it calls the dataset's
``on_epoch_begin``, so state changed there may never reach the workers, while
``on_epoch_end`` runs after the previous epoch's pool has stopped.
"""

from __future__ import annotations

import math

import keras

from feedbench.core.spec import Built, Spec
from feedbench.generators.keying import epoch_order, keyed_batch


class KeyedDataset(keras.utils.PyDataset):
    def __init__(self, source, batch_size, seed, shuffle, work, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.work = work
        self.epoch = 0
        self._order = epoch_order(seed, 0, source.n, shuffle)

    def __len__(self):
        return math.ceil(self.source.n / self.batch_size)

    def __getitem__(self, idx):
        if not 0 <= idx < len(self):
            raise IndexError(f"batch index {idx} out of range [0, {len(self)})")
        return keyed_batch(self.source, self._order, self.batch_size, idx, self.seed, self.epoch, self.work)

    def on_epoch_end(self):
        self.epoch += 1
        self._order = epoch_order(self.seed, self.epoch, self.source.n, self.shuffle)


def build(spec: Spec, source) -> Built:
    dataset = KeyedDataset(source, spec.batch_size, spec.seed, spec.shuffle, spec.work, **spec.parallel_settings())
    # Shuffling is planned inside the dataset: fit must not reorder batches
    # with Python's global `random`, which would make runs irreproducible.
    return Built(spec, "pydataset", dataset, source, fit_shuffle=False)
