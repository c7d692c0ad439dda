"""Legacy Keras 2 (``tf_keras``): what ``fit`` delivers when ``workers`` and
``use_multiprocessing`` are arguments of ``fit``.

Keras 2 feeds a ``Sequence`` through an ``OrderedEnqueuer`` and a plain
Python generator through a ``GeneratorEnqueuer``; with
``use_multiprocessing=True`` the latter runs the generator in every worker
process, each on its own copy. The run happens in a fresh process with
``TF_USE_LEGACY_KERAS=1`` (``tf.keras`` is then ``tf_keras``), under a time
limit, its process group killed at the end; the tap (``feedbench.tap``)
records the sample ids the train step receives.

Needs ``pip install -e ".[legacy]"`` (tf_keras matching the TensorFlow version).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys

from feedbench.errors import DriveTimeout, FeedbenchError

KINDS = ("sequence", "generator")


def available() -> bool:
    return importlib.util.find_spec("tf_keras") is not None


def legacy_stream(kind: str, workers: int = 1, use_multiprocessing: bool = False, epochs: int = 2,
                  n: int = 160, batch_size: int = 16, timeout_s: float = 120.0) -> dict:
    """FitStream.summary() of a legacy fit, plus its ``ids`` per epoch."""
    if kind not in KINDS:
        raise ValueError(f"unknown legacy data kind {kind!r}; expected one of {list(KINDS)}")
    if not available():
        raise FeedbenchError("legacy Keras 2 needs tf_keras installed (pip install -e '.[legacy]')")
    request = json.dumps({"kind": kind, "workers": workers, "use_multiprocessing": use_multiprocessing,
                          "epochs": epochs, "n": n, "batch_size": batch_size})
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "feedbench.legacy", request], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DriveTimeout(f"legacy {kind} (workers={workers}, use_multiprocessing={use_multiprocessing}): "
                           f"run exceeded its time limit of {timeout_s:g} s") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and every worker it forked
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    if proc.returncode != 0:
        raise FeedbenchError(f"legacy {kind} (workers={workers}, use_multiprocessing={use_multiprocessing}) "
                             f"failed with status {proc.returncode}: {_error_line(err)}")
    return json.loads(out.strip().splitlines()[-1])


def _error_line(stderr: str) -> str:
    """The last ``SomeError: message`` line (TensorFlow wraps Python errors in its own)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception): ", line)]
    return (errors or lines or ["(no message)"])[-1]


def _run(request: dict) -> dict:
    import tensorflow as tf

    from feedbench.data import make_source
    from feedbench.generators.keying import epoch_order, keyed_batch
    from feedbench.generators.pygen import keyed_batches
    from feedbench.generators.spec import Spec
    from feedbench.tap import FitStream, Tap, count_hooks

    import tf_keras

    keras = tf.keras
    if not keras.__name__.startswith("tf_keras"):
        raise RuntimeError(f"tf.keras is {keras.__name__}; expected tf_keras (TF_USE_LEGACY_KERAS=1)")
    spec = Spec("keyed", n_samples=request["n"], batch_size=request["batch_size"])
    source = make_source(spec.size, spec.n_samples, spec.seed, traced=True)

    class KeyedSequence(keras.utils.Sequence):
        """``keyed``'s stream as a Keras 2 Sequence."""

        def __init__(self):
            self.epoch = 0
            self.order = epoch_order(spec.seed, 0, source.n, spec.shuffle)

        def __len__(self):
            return math.ceil(source.n / spec.batch_size)

        def __getitem__(self, idx):
            return keyed_batch(source, self.order, spec.batch_size, idx, spec.seed, self.epoch, spec.work)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = epoch_order(spec.seed, self.epoch, source.n, spec.shuffle)

    stream = FitStream(f"tf_keras {tf_keras.__version__}")
    fit_args = {"workers": request["workers"], "use_multiprocessing": request["use_multiprocessing"]}
    if request["kind"] == "sequence":
        data = KeyedSequence()
        count_hooks(data, stream.hooks)
    else:
        data = keyed_batches(spec, source)
        fit_args["steps_per_epoch"] = spec.batches_per_epoch
    tap = Tap(keras)
    model = tap.model(source.x.shape[1:])
    model.fit(data, epochs=request["epochs"], shuffle=False, verbose=0, callbacks=[tap.callback()], **fit_args)
    stream.epochs = tap.epochs
    return {**stream.summary(source.n), "ids": stream.epochs}


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.argv[1]))))
