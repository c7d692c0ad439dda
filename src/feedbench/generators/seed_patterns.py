"""The three Sequence patterns of a widely read answer to "why does accuracy
drop when I use tf.keras.utils.Sequence?", reproduced faithfully because
people copy them. Their flaws are the point: feedbench measures them.

- ``seed_unseeded``: slices a *view* of the source, then assigns
  ``tf.image.random_flip_left_right(sample)`` (no seed) back into that view
  element by element. With threads (or serially) the flips are written into
  the source itself; in forked workers they land in the child's copy.
- ``seed_reseeded``: the same, with ``tf.random.set_seed(42)`` at the top of
  every ``__getitem__``, the advice given to make augmentation "consistent".
- ``seed_bounded``: no augmentation; the slice end is ``min((idx+1)*bs, n)``,
  the advice given for uneven last batches.

None shuffles by itself: like the original, they rely on ``fit(shuffle=True)``.
"""

from __future__ import annotations

import math

import keras

from feedbench.core.spec import Built, Spec


class _SeedPattern(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, work, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.work = work

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)


class SeedUnseeded(_SeedPattern):
    def __getitem__(self, idx):
        import tensorflow as tf

        batch_x = self.x[idx * self.batch_size : (idx + 1) * self.batch_size]
        batch_y = self.y[idx * self.batch_size : (idx + 1) * self.batch_size]
        for i in range(len(batch_x)):
            batch_x[i] = tf.image.random_flip_left_right(batch_x[i])
        return self.work.apply(batch_x), batch_y


class SeedReseeded(_SeedPattern):
    def __getitem__(self, idx):
        import tensorflow as tf

        tf.random.set_seed(42)
        batch_x = self.x[idx * self.batch_size : (idx + 1) * self.batch_size]
        batch_y = self.y[idx * self.batch_size : (idx + 1) * self.batch_size]
        for i in range(len(batch_x)):
            batch_x[i] = tf.image.random_flip_left_right(batch_x[i])
        return self.work.apply(batch_x), batch_y


class SeedBounded(_SeedPattern):
    def __getitem__(self, idx):
        end = min((idx + 1) * self.batch_size, len(self.x))
        batch_x = self.x[idx * self.batch_size : end]
        batch_y = self.y[idx * self.batch_size : end]
        return self.work.apply(batch_x), batch_y


def _build(cls, spec: Spec, source) -> Built:
    dataset = cls(
        source.x,
        source.y,
        spec.batch_size,
        spec.work,
        **spec.parallel_settings(),
    )
    return Built(spec, "pydataset", dataset, source, fit_shuffle=spec.shuffle)


def build_unseeded(spec: Spec, source) -> Built:
    return _build(SeedUnseeded, spec, source)


def build_reseeded(spec: Spec, source) -> Built:
    return _build(SeedReseeded, spec, source)


def build_bounded(spec: Spec, source) -> Built:
    return _build(SeedBounded, spec, source)
