"""``generator``: a plain Python generator function, fed the way Keras feeds one.

Keras 3 pulls a generator serially in the main process and needs
``steps_per_epoch`` because a generator has no length; so this one runs
forever, epoch after epoch, with the same keyed batches as ``keyed``.
"""

from __future__ import annotations

from feedbench.core.spec import Built, Spec, not_applicable
from feedbench.generators.keying import epoch_order, keyed_batch


def keyed_batches(spec: Spec, source):
    epoch = 0
    while True:
        order = epoch_order(spec.seed, epoch, source.n, spec.shuffle)
        for index in range(spec.batches_per_epoch):
            yield keyed_batch(source, order, spec.batch_size, index, spec.seed, epoch, spec.work)
        epoch += 1


def build(spec: Spec, source) -> Built:
    return Built(
        spec,
        "generator",
        keyed_batches(spec, source),
        source,
        steps_per_epoch=spec.batches_per_epoch,
        not_applicable=not_applicable("generator", spec),
    )
