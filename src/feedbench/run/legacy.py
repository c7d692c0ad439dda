"""Legacy Keras 2 in a fresh process: ``TF_USE_LEGACY_KERAS`` must be set before TensorFlow loads."""

from __future__ import annotations

import sys

from feedbench.core.child import run_child, serve
from feedbench.core.errors import FeedbenchError
from feedbench.fit.legacy import KINDS, available, run_legacy


def legacy_stream(
    kind: str,
    workers: int = 1,
    use_multiprocessing: bool = False,
    epochs: int = 2,
    n: int = 160,
    batch_size: int = 16,
    timeout_s: float = 120.0,
) -> dict:
    """FitStream.summary() of a legacy fit, plus its ``ids`` per epoch."""
    if kind not in KINDS:
        raise ValueError(f"unknown legacy data kind {kind!r}; expected one of {list(KINDS)}")
    if not available():
        raise FeedbenchError("legacy Keras 2 needs tf_keras installed (pip install -e '.[legacy]')")
    request = {
        "kind": kind,
        "workers": workers,
        "use_multiprocessing": use_multiprocessing,
        "epochs": epochs,
        "n": n,
        "batch_size": batch_size,
    }
    what = f"legacy {kind} (workers={workers}, use_multiprocessing={use_multiprocessing})"
    return run_child("feedbench.run.legacy", request, timeout_s, {"TF_USE_LEGACY_KERAS": "1"}, what=what)[0]


if __name__ == "__main__":
    sys.exit(serve(lambda request: [run_legacy(request)]))
