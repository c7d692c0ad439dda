"""``grain``: keyed's batches from Grain, the loader of the JAX ecosystem (Keras 3 fits its datasets).

A ``MapDataset`` over global batch numbers (epoch * batches per epoch + index), mapped through
keyed's batch function, turned into an ``IterDataset``; Keras is given ``steps_per_epoch`` and
keeps one iterator across epochs, so Grain's workers start once. The ``workers`` axis maps to
``mp_prefetch`` worker processes with ``use_multiprocessing=True`` (Grain starts them with
spawn and sends each the pipeline pickled: an on-disk source travels as its file name and is
mapped again there) and to read threads (``ReadOptions.num_threads``) without; ``workers=1``
without is the serial reference (no read threads: the consumer reads).
"""

from __future__ import annotations

from feedbench.core.spec import Built, Spec, own_workers_not_applicable
from feedbench.generators.keying import KeyedBatches

NO_QUEUE = (
    "Grain buffers per worker (per_worker_buffer_size) and per reader (prefetch_buffer_size); max_queue_size is Keras's"
)
EPOCHS_AHEAD = 1_000_000  # the batch numbers an iterator can reach: Keras stops it long before


class _GlobalBatch:
    """Batch number -> keyed's batch (picklable: Grain's spawned workers receive it)."""

    def __init__(self, batches: KeyedBatches, per_epoch: int):
        self.batches, self.per_epoch = batches, per_epoch

    def __call__(self, number: int):
        epoch, index = divmod(int(number), self.per_epoch)
        return self.batches(epoch, index)


def not_applied(spec: Spec) -> dict[str, str]:
    """The settings of ``spec`` Grain cannot run, each with the reason."""
    return own_workers_not_applicable(spec, NO_QUEUE)  # threads are Grain's read threads


def _closing(dataset):
    """``dataset`` as an IterDataset that remembers the iterators it hands out, so the run can close
    them (and with them Grain's worker processes) instead of waiting for garbage collection."""
    import grain

    class Closing(grain.IterDataset):
        def __init__(self, parent):
            super().__init__(parent)
            self.iterators = []

        def __iter__(self):
            # Kept until the run ends: closing an abandoned mp_prefetch iterator (Keras's peek) while
            # the next one starts hung Grain's interleave here, so the peek's workers live until then.
            iterator = self._parent.__iter__()
            self.iterators.append(iterator)
            return iterator

        def close(self):
            while self.iterators:
                self.iterators.pop().close()

    return Closing(dataset)


def _absl_flags_usable() -> None:
    """Where jax is installed, Grain reads an absl flag when its worker processes start; outside
    ``absl.app`` the flags were never parsed and that read raises ``UnparsedFlagAccessError``.
    Mark them parsed (their defaults), as Grain's own tests do; flags already parsed are left alone."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def build(spec: Spec, source) -> Built:
    import grain

    per_epoch = spec.batches_per_epoch
    batches = KeyedBatches(source, spec.batch_size, spec.seed, spec.shuffle, spec.work)
    threads = 0 if spec.use_multiprocessing or spec.workers <= 1 else spec.workers
    dataset = grain.MapDataset.range(per_epoch * EPOCHS_AHEAD).map(_GlobalBatch(batches, per_epoch))
    dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(threads, 1) * 2))
    if spec.use_multiprocessing:
        _absl_flags_usable()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=spec.workers))
    dataset = _closing(dataset)
    skipped = not_applied(spec)
    return Built(
        spec,
        "grain",
        dataset,
        source,
        steps_per_epoch=per_epoch,
        not_applicable=skipped,
        applied_settings={"workers": max(spec.workers, 1), "use_multiprocessing": spec.use_multiprocessing},
        release=dataset.close,
    )
