"""``feedbench profile``: the three measurements over a grid of settings.

Each setting runs in its own process (``python -m feedbench.profile``), in its
own session, under a time limit: a generator that raises, hangs or changes
shape fails that setting with a one-line reason, the process group is killed
if need be, and the other settings go on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

from feedbench.generators import Spec

THROUGHPUT_KEYS = ("first_batch_s", "samples_per_s", "latency_p50_s", "latency_p95_s", "wait_fraction")
MEMORY_KEYS = (
    "peak_tree_uss_bytes",
    "peak_tree_pss_bytes",
    "peak_tree_rss_bytes",
    "peak_main_rss_bytes",
    "peak_workers_uss_bytes",
    "workers_seen",
    "growth_bytes",
)
DETERMINISM_KEYS = (
    "missing",
    "duplicated",
    "in_order",
    "reproducible",
    "matches_serial",
    "epoch_diversity",
    "repeated_draws",
    "source_intact",
)
RUNS_PER_SETTING = 5  # throughput, memory, and up to three determinism runs
START_UP_SLACK_S = 90  # importing TensorFlow in a fresh process, on a busy machine

VERDICTS = {
    "missing": (
        "samples never delivered in an epoch",
        "__len__ is too short, or __getitem__ skips indices or returns another batch in their place",
        "make __len__ ceil(n / batch_size) and map each index to its own rows",
    ),
    "duplicated": (
        "samples delivered more than once in an epoch",
        "__getitem__ returns the same rows for two indices",
        "derive each batch's rows from its index alone",
    ),
    "in_order": (
        "an unshuffled run does not deliver samples in index order",
        "the generator reorders batches, or its rows depend on which worker asks first",
        "index rows by the batch index; shuffle on purpose, keyed by (seed, epoch)",
    ),
    "reproducible": (
        "two runs with the same seed deliver different batches",
        "draws from an unseeded or global RNG (tf.random, np.random, Python's random: fit(shuffle=True) "
        "reorders PyDataset batches with it), or threads racing on one seeded RNG",
        "draw from a generator keyed by (seed, epoch, batch index), like feedbench's keyed",
    ),
    "matches_serial": (
        "the stream under this setting differs from workers=1, use_multiprocessing=False",
        "global RNG state copied into forked workers, state changed where workers cannot see it, or "
        "writes into the source that threads share and processes do not",
        "make every batch a pure function of (seed, epoch, index) and never write into the source",
    ),
    "epoch_diversity": (
        "augmentation is frozen: samples look the same in every epoch",
        "the random state is reset to a constant (e.g. tf.random.set_seed in __getitem__), or there is no augmentation",
        "key draws on the epoch as well as the batch index",
    ),
    "repeated_draws": (
        "different batches received the identical random augmentation",
        "forked workers inherit one NumPy/TensorFlow RNG state and draw the same numbers, "
        "or a constant is reseeded before every batch",
        "seed a generator per batch from (seed, epoch, index) instead of using the global RNG",
    ),
    "source_intact": (
        "the generator wrote into its source arrays",
        "a slice like x[a:b] is a view: assigning into it writes the source; with threads (and the "
        "TensorFlow adapter's own reads of batches 0 and 1) this persists, in forked workers it does not",
        "copy the slice (np.array(x[a:b])) before changing it",
    ),
}


def settings_grid(workers=(1, 2, 4), multiprocessing=(False, True)) -> list[tuple[int, bool]]:
    return [(w, mp) for mp in multiprocessing for w in workers]


def profile(
    base: Spec,
    grid: list[tuple[int, bool]],
    epochs: int = 3,
    timeout_s: float = 120.0,
    plugins=(),
    progress=None,
) -> list[dict]:
    """One record per setting, each measured in its own process."""
    records = []
    for number, (workers, multiprocessing) in enumerate(grid, 1):
        spec = replace(base, workers=workers, use_multiprocessing=multiprocessing)
        started = time.monotonic()
        if progress:
            progress(f"[{number}/{len(grid)}] workers={workers} use_multiprocessing={multiprocessing} ...")
        record = run_isolated(spec, epochs, timeout_s, plugins)
        records.append(record)
        if progress:
            state = "skipped" if record.get("skipped") else ("FAILED: " + record["error"] if record.get("error") else "done")
            progress(f"[{number}/{len(grid)}] workers={workers} use_multiprocessing={multiprocessing} {state} "
                     f"({time.monotonic() - started:.1f} s)")
    return records


def run_isolated(spec: Spec, epochs: int, timeout_s: float, plugins=()) -> dict:
    """Measure one setting in a child process; never more than its time limit."""
    limit = timeout_s * RUNS_PER_SETTING + START_UP_SLACK_S
    with tempfile.TemporaryDirectory(prefix="feedbench-profile-") as tmp:
        out = os.path.join(tmp, "record.json")
        request = json.dumps({"spec": spec.to_dict(), "epochs": epochs, "timeout_s": timeout_s, "plugins": list(plugins), "out": out})
        proc = subprocess.Popen(
            [sys.executable, "-m", "feedbench.profile", request],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
            start_new_session=True,  # its own process group: killed whole on timeout
        )
        try:
            _, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return _failed(spec, f"setting exceeded its time limit of {limit:g} s and was killed")
        finally:
            _kill_group(proc.pid)
        if os.path.exists(out):
            with open(out) as handle:
                return json.load(handle)
        lines = [line for line in (stderr or "").splitlines() if line.strip()]
        return _failed(spec, lines[-1] if lines else f"measuring process exited with status {proc.returncode}")


def _child_env() -> dict:
    """The child imports what this process imports: plug-ins found on our sys.path too."""
    paths = [entry or os.getcwd() for entry in sys.path]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)  # workers the child may have left behind
    except (ProcessLookupError, PermissionError):
        pass


def _failed(spec: Spec, reason: str) -> dict:
    return {"workers": spec.workers, "use_multiprocessing": spec.use_multiprocessing, "error": reason,
            "throughput": None, "memory": None, "determinism": None, "null_reasons": {}}


def measure_setting(spec: Spec, epochs: int, timeout_s: float, plugins=()) -> dict:
    """All three measurements of one setting, as a JSON-able record."""
    from feedbench.errors import FeedbenchError
    from feedbench.generators import build
    from feedbench.measure import measure_determinism, measure_memory, measure_throughput

    record = {"workers": spec.workers, "use_multiprocessing": spec.use_multiprocessing, "error": None,
              "throughput": None, "memory": None, "determinism": None, "null_reasons": {}}
    try:
        built = build(spec, plugins)
        if built.not_applicable:
            record["skipped"] = "; ".join(sorted(set(built.not_applicable.values())))
            return record
        throughput = measure_throughput(spec, epochs, timeout_s, plugins=plugins)
        record["throughput"] = {key: throughput.summary()[key] for key in THROUGHPUT_KEYS}
        memory = measure_memory(spec, epochs, timeout_s, plugins=plugins)
        record["memory"] = {key: getattr(memory, key) for key in MEMORY_KEYS}
        if memory.growth_bytes is None:
            record["null_reasons"]["memory.growth_bytes"] = memory.growth_reason
        determinism = measure_determinism(spec, epochs, timeout_s, plugins=plugins)
        record["determinism"] = {key: getattr(determinism, key) for key in DETERMINISM_KEYS}
        record["determinism"]["source_rows_changed"] = determinism.source_rows_changed
        record["determinism"]["dropped_by_design"] = determinism.dropped_by_design
        record["determinism"]["identified_by"] = determinism.identified_by
        record["null_reasons"].update({f"determinism.{k}": v for k, v in determinism.reasons.items()})
        record["problems"] = determinism.problems()
    except (FeedbenchError, ValueError) as exc:
        record["error"] = str(exc).splitlines()[0]
    return record


def _main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    request = json.loads(argv[0])
    spec = Spec(**request["spec"])
    record = measure_setting(spec, request["epochs"], request["timeout_s"], request["plugins"])
    with open(request["out"], "w") as handle:
        json.dump(record, handle)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
