"""``tfdata_service``: a tf.data pipeline served by the tf.data service, the path when input
outgrows one machine's cores.

``build`` starts a dispatcher and ``workers`` worker servers, each in its own process (they die
with the process that started them, and ``Built.close`` stops them), and feeds Keras the
pipeline through ``distribute(processing_mode="distributed_epoch")``: the dispatcher hands each
worker splits of a range of batch numbers, and every batch is a pure function of its number
(a stateless epoch permutation, stateless flips and brightness keyed by (seed, number)), so its
content does not depend on which worker made it; the order in which batches from different
workers arrive does (the service promises no order).

The pipeline is native graph work (a Python batch function cannot travel to another process),
so it runs the ``copy`` workload, as ``tfdata`` does. With ``use_multiprocessing=True`` the
``workers`` axis is the number of worker servers; ``workers=1`` without it is one worker server
(the serial reference); threads do not apply (the service's workers are processes).

To use servers on other machines, start ``python -m feedbench.generators.tfdata_service_server
dispatcher`` on one host and ``... worker HOST:PORT`` on each worker host, and set
``FEEDBENCH_TFDATA_SERVICE=HOST:PORT``: feedbench then starts no servers and feeds from that
dispatcher (the workers must reach the same sources as a local run).
"""

from __future__ import annotations

import select
import subprocess
import sys
import time

import numpy as np

from feedbench.core import procs, settings
from feedbench.core.errors import FeedbenchError
from feedbench.core.spec import Built, Spec, own_workers_not_applicable
from feedbench.generators.keying import BRIGHTNESS_JITTER

START_TIMEOUT_S = 120.0
EPOCHS_AHEAD = 1_000_000
NO_THREADS = "the tf.data service's workers are server processes: use_multiprocessing=True sets how many"
NO_QUEUE = "the tf.data service buffers per worker; max_queue_size is Keras's"


class Servers:
    """A dispatcher and its worker servers, each a process of its own."""

    def __init__(self, workers: int):
        self.processes: list[subprocess.Popen] = []
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            self.address = self._ready(self._start(["dispatcher"]), "dispatcher", deadline)
            started = [self._start(["worker", self.address]) for _ in range(workers)]  # all at once
            for proc in started:
                self._ready(proc, "worker", deadline)
        except BaseException:
            self.stop()
            raise

    def _start(self, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "feedbench.generators.tfdata_service_server", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.processes.append(proc)
        return proc

    def _ready(self, proc: subprocess.Popen, role: str, deadline: float) -> str:
        """The server's address once it says it is ready; one line if it dies or takes too long."""
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            code = proc.poll()
            how = procs.how_it_ended(code) if code is not None else f"no answer within {START_TIMEOUT_S:g} s"
            raise FeedbenchError(f"tf.data service {role} did not start ({how}); expected it to print its address")
        return line.split(" ", 1)[1].strip()

    def stop(self) -> None:
        for proc in self.processes:
            procs.quietly(proc.kill)
        for proc in self.processes:
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.processes = []


def not_applied(spec: Spec) -> dict[str, str]:
    """The settings of ``spec`` the service cannot run, each with the reason."""
    return own_workers_not_applicable(spec, NO_QUEUE, NO_THREADS)


def pipeline(spec: Spec, source):
    """Batch number -> the batch, in graph ops only (it runs in the worker servers)."""
    import tensorflow as tf

    per_epoch, n, bs = spec.batches_per_epoch, source.n, spec.batch_size
    x_all = tf.constant(np.asarray(source.x))
    y_all = tf.constant(np.asarray(source.y))

    def batch(number):
        epoch, index = number // per_epoch, number % per_epoch
        if spec.shuffle:
            keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(spec.seed, tf.int64), epoch]))
            order = tf.argsort(keys)
        else:
            order = tf.range(n)
        rows = order[index * bs : tf.minimum((index + 1) * bs, n)]
        x, y = tf.gather(x_all, rows), tf.gather(y_all, rows)
        key = tf.stack([tf.constant(spec.seed, tf.int64), number])
        x = tf.image.stateless_random_flip_left_right(x, seed=key)
        shift = tf.random.stateless_uniform(
            [tf.shape(x)[0], 1, 1, 1], seed=key + [0, 1 << 40], minval=-BRIGHTNESS_JITTER, maxval=BRIGHTNESS_JITTER
        )
        return x + shift, y

    return tf.data.Dataset.range(per_epoch * EPOCHS_AHEAD).map(batch)


def build(spec: Spec, source) -> Built:
    import tensorflow as tf

    if spec.workload != "copy":
        raise ValueError(
            f"workload {spec.workload!r} given for tfdata_service; its pipeline runs in other processes "
            "as graph ops, so it runs only the 'copy' workload"
        )
    workers, skipped = max(spec.workers, 1), not_applied(spec)
    external = settings.current().tfdata_service
    servers = None if external else Servers(workers)
    address = external or servers.address
    try:
        dataset = pipeline(spec, source).apply(
            tf.data.experimental.service.distribute(processing_mode="distributed_epoch", service=f"grpc://{address}")
        )
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    except BaseException:
        if servers is not None:
            servers.stop()
        raise
    return Built(
        spec,
        "tfdata",
        dataset,
        source,
        steps_per_epoch=spec.batches_per_epoch,
        not_applicable=skipped,
        applied_settings={"workers": workers, "use_multiprocessing": spec.use_multiprocessing},
        release=servers.stop if servers is not None else None,
    )
