"""``feedbench shm-targets``, the measuring half: what ``shm`` must achieve, as ratios measured in one run.

- ``copy`` workload, large source: ``shm`` with 2 workers against ``keyed``
  under Keras's multiprocessing with 2 workers (target >= 3x), and against the
  best of ``keyed`` on 1, 2, 4 threads (target >= 0.9x);
- ``python`` workload (a pure-Python loop per sample that holds the GIL, heavier
  than the grid's so the GIL, not the harness, bounds the threads): ``shm``
  with 2 workers against the best thread setting (target >= 1.6x);
- memory: the workers' peak USS at most the ring plus 64 MiB per worker, so
  the tree's peak USS is at most the main process's + the ring + 64 MiB per
  worker;
- determinism: missing = duplicated = 0, reproducible and matches_serial under
  workers 1, 2, 4 x use_multiprocessing off/on x shuffle off/on;
- ``fit(shuffle=True)`` (Keras's default, which permutes a PyDataset's batch indices): ``shm``
  on the large copy at least 0.9x its throughput under ``shuffle=False``;
- peers: ``shm`` at least matches (>= 1.0x) the best setting of each loader a user would pick
  instead (torch's DataLoader, Grain; serial, 2 threads where it has them, 2 processes), on the
  large copy and on the python workload. A peer that is not installed is n/a;
- the CPU stand-in for a GPU step (``feedbench.measure.step_bound``: a model whose step sleeps
  20 ms with the GIL released): ``shm`` on the large copy at least 0.9x the same model fed one
  prepared batch, measured in the same process.

Every setting is measured by :mod:`feedbench.run.sweep` (a time limit each);
:mod:`feedbench.report.shm_targets` renders the result.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import replace
from datetime import datetime, timezone

from feedbench.core.data import SIZES
from feedbench.core.spec import Spec
from feedbench.generators.registry import BUILTINS
from feedbench.measure.determinism import DeterminismFigures
from feedbench.measure.memory import MemoryFigures

THREADS = (1, 2, 4)
REPEATS = 3  # rounds of every throughput setting; figures are medians
COPY_EPOCHS = 12  # the large copy's throughput window: a ratio needs seconds, not a fraction of one
STEP_EPOCHS = 10  # the step-bound window: an epoch is 16 steps of 20 ms; a ratio needs several seconds
PYTHON_ITERS = 20_000
MIB = 1 << 20
WORKER_BUDGET_BYTES = 64 * MIB
COPY = Spec("shm", size="large", n_samples=512, batch_size=32, workload="copy", workers=2, use_multiprocessing=True)
PYTHON = Spec(
    "shm",
    size="small",
    n_samples=1024,
    batch_size=64,
    workload="python",
    python_iters=PYTHON_ITERS,
    workers=2,
    use_multiprocessing=True,
)
STREAM = Spec("shm", size="small", n_samples=500, batch_size=64)
PEERS = ("torch_dataloader", "grain")
TARGETS = {
    "copy_vs_keyed_processes": 3.0,
    "copy_vs_best_threads": 0.9,
    "python_vs_best_threads": 1.6,
    "copy_fit_shuffle_vs_not": 0.9,
    "copy_step_bound_vs_ceiling": 0.9,
    **{f"{workload}_vs_best_{peer}": 1.0 for workload in ("copy", "python") for peer in PEERS},
}


def _peer_settings(base: Spec, peer: str) -> list[Spec]:
    """The settings of ``peer`` that run here (what its own rule allows), for ``base``'s workload."""
    impl = BUILTINS[peer]
    if impl.missing_reason():
        return []
    candidates = [
        replace(base, impl=peer, workers=1, use_multiprocessing=False),
        replace(base, impl=peer, workers=2, use_multiprocessing=False),
        replace(base, impl=peer, workers=2, use_multiprocessing=True),
    ]
    return [spec for spec in candidates if not impl.not_applicable(spec)]


def _threads(base: Spec) -> list[Spec]:
    return [replace(base, impl="keyed", workers=w, use_multiprocessing=False) for w in THREADS]


def ring_bytes(spec: Spec) -> int:
    """The shared-memory ring shm allocates for ``spec`` (traced ids: two int64 per sample)."""
    from feedbench.generators.shm import ring_slots

    sample = math.prod(SIZES[spec.size]) * 4 + 2 * 8
    return ring_slots(spec.workers) * spec.batch_size * sample


def measure(epochs: int = 3, timeout_s: float = 120.0, progress=None, repeats: int = REPEATS) -> dict:
    """The targets' figures and verdicts; ``repeats`` rounds of every throughput setting (medians)."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} given; expected 1 or more rounds")
    from feedbench.run.sweep import sweep

    def say(text):
        if progress:
            progress(text)

    peer_specs = {
        (workload, peer): _peer_settings(base, peer)
        for workload, base in (("copy", COPY), ("python", PYTHON))
        for peer in PEERS
    }
    copy_specs = [
        COPY,
        replace(COPY, impl="keyed"),
        *_threads(COPY),
        replace(COPY, fit_shuffle=True),
        *[spec for (workload, _), specs in peer_specs.items() if workload == "copy" for spec in specs],
    ]
    python_specs = [
        PYTHON,
        *_threads(PYTHON),
        *[spec for (workload, _), specs in peer_specs.items() if workload == "python" for spec in specs],
    ]
    say(f"throughput: {len(copy_specs) + len(python_specs)} settings x {repeats} rounds ...")
    # Ratios compare settings of one workload, so each workload is its own set of rounds.
    errors: dict[Spec, str] = {}  # a failed round's reason, per setting
    copy_sps = _rounds(copy_specs, max(epochs, COPY_EPOCHS), timeout_s, errors, repeats)
    python_sps = _rounds(python_specs, epochs, timeout_s, errors, repeats)
    copy_shuffled = copy_sps[replace(COPY, fit_shuffle=True)]
    peer_sps = {
        (workload, peer): {_setting(spec): (copy_sps if workload == "copy" else python_sps)[spec] for spec in specs}
        for (workload, peer), specs in peer_specs.items()
    }
    say(f"step-bound: shm, 2 workers, copy, large source, against one prepared batch, {repeats} rounds ...")
    rounds = sweep([COPY] * repeats, ("step_bound",), max(epochs, STEP_EPOCHS), timeout_s, fresh_each=True)
    bounds = [r.step_bound for r in rounds]
    bound_ratio = _median([b.of_ceiling if b else None for b in bounds])
    bound_sps = _median([b.samples_per_s if b else None for b in bounds])
    bound_ceiling = _median([b.ceiling_samples_per_s if b else None for b in bounds])
    say("memory: shm, 2 workers, copy, large source ...")
    memory = sweep([COPY], ("memory",), epochs, timeout_s)[0]
    stream_specs = [
        replace(STREAM, workers=w, use_multiprocessing=mp, shuffle=sh)
        for sh in (False, True)
        for mp in (False, True)
        for w in THREADS
    ]
    say(f"determinism: {len(stream_specs)} settings ...")
    streams = sweep(stream_specs, ("determinism",), epochs, timeout_s)

    copy_shm, copy_keyed_mp = copy_sps[COPY], copy_sps[replace(COPY, impl="keyed")]
    copy_threads = [copy_sps[spec] for spec in _threads(COPY)]
    python_shm, python_threads = python_sps[PYTHON], [python_sps[spec] for spec in _threads(PYTHON)]
    mem = memory.memory or MemoryFigures()
    ring = ring_bytes(COPY)
    budget = ring + WORKER_BUDGET_BYTES * COPY.workers
    determinism = []
    for spec, record in zip(stream_specs, streams):
        d = record.determinism or DeterminismFigures()
        serial = spec.workers == 1 and not spec.use_multiprocessing  # the reference itself: None
        ok = (
            record.error is None
            and d.missing == 0
            and d.duplicated == 0
            and d.reproducible is True
            and (d.matches_serial is True or (serial and d.matches_serial is None))
        )
        determinism.append(
            {
                "workers": spec.workers,
                "use_multiprocessing": spec.use_multiprocessing,
                "shuffle": spec.shuffle,
                "ok": ok,
                "error": record.error,
                "missing": d.missing,
                "duplicated": d.duplicated,
                "reproducible": d.reproducible,
                "matches_serial": d.matches_serial,
            }
        )
    ratios = {
        "copy_vs_keyed_processes": _ratio(copy_shm, copy_keyed_mp),
        "copy_vs_best_threads": _ratio(copy_shm, _best(copy_threads)),
        "python_vs_best_threads": _ratio(python_shm, _best(python_threads)),
        "copy_fit_shuffle_vs_not": _ratio(copy_shuffled, copy_shm),
        "copy_step_bound_vs_ceiling": bound_ratio,
    }
    not_measured, failures = {}, {}
    for (workload, peer), figures in peer_sps.items():
        key = f"{workload}_vs_best_{peer}"
        if not figures:
            not_measured[key] = BUILTINS[peer].missing_reason() or f"{peer}: no setting runs here"
            continue
        specs = peer_specs[(workload, peer)]
        failed = [
            f"{_setting(spec)} ({errors.get(spec, 'no figure')})" for spec in specs if figures[_setting(spec)] is None
        ]
        if failed:  # the best of what ran would flatter shm: the comparison fails instead
            ratios[key] = None
            failures[key] = f"{peer} {', '.join(failed)} failed"
            continue
        ratios[key] = _ratio(python_shm if workload == "python" else copy_shm, _best(figures.values()))
    return {
        "machine": platform.node(),
        "cores": os.cpu_count(),
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "samples_per_s": {
            "copy": {
                "shm_2_processes": copy_shm,
                "keyed_2_processes": copy_keyed_mp,
                **{f"keyed_{w}_threads": v for w, v in zip(THREADS, copy_threads)},
                "shm_2_processes_fit_shuffle": copy_shuffled,
                "shm_2_processes_step_bound": bound_sps,
                "one_prepared_batch_step_bound": bound_ceiling,
                **{
                    f"{peer}_{name}": v
                    for (w, peer), figs in peer_sps.items()
                    if w == "copy"
                    for name, v in figs.items()
                },
            },
            "python": {
                "shm_2_processes": python_shm,
                **{f"keyed_{w}_threads": v for w, v in zip(THREADS, python_threads)},
                **{
                    f"{peer}_{name}": v
                    for (w, peer), figs in peer_sps.items()
                    if w == "python"
                    for name, v in figs.items()
                },
            },
        },
        "ratios": ratios,
        "not_measured": not_measured,
        "failures": failures,
        "memory": {
            "peak_tree_uss_bytes": mem.peak_tree_uss_bytes,
            "peak_workers_uss_bytes": mem.peak_workers_uss_bytes,
            "ring_bytes": ring,
            "workers_budget_bytes": budget,
            "error": memory.error,
        },
        "determinism": determinism,
        "passed": {
            **{k: v is not None and v >= TARGETS[k] for k, v in ratios.items()},  # n/a peers: absent
            "memory": mem.peak_workers_uss_bytes is not None and mem.peak_workers_uss_bytes <= budget,
            "determinism": all(d["ok"] for d in determinism),
        },
    }


def _rounds(specs: list[Spec], epochs: int, timeout_s: float, errors: dict, repeats: int) -> dict[Spec, float | None]:
    """Each setting's median samples/s over ``repeats`` rounds (None where a round failed), by setting.

    Every setting in a process of its own, as a user runs one loader per process (the first
    setting a process measures runs faster than later ones, and one loader's workers or signal
    handlers must not disturb the next); rounds interleave the settings, so a slow minute of a
    shared machine hits all of them.
    """
    from feedbench.run.sweep import sweep

    if len(set(specs)) != len(specs):
        raise ValueError("a setting listed twice would be measured twice and read once")
    n = len(specs)
    order = [(r * n // repeats + i) % n for r in range(repeats) for i in range(n)]
    speed = sweep([specs[i] for i in order], ("throughput",), epochs, timeout_s, fresh_each=True)
    rounds: dict[int, list] = {i: [] for i in range(n)}
    for i, record in zip(order, speed):
        rounds[i].append(record.throughput.samples_per_s if record.throughput else None)
        if record.error:
            errors.setdefault(specs[i], record.error)
    return {specs[i]: _median(rounds[i]) for i in range(n)}


def _setting(spec: Spec) -> str:
    if spec.workers == 1 and not spec.use_multiprocessing:
        return "serial"
    return f"{spec.workers}_{'processes' if spec.use_multiprocessing else 'threads'}"


def _median(values):
    known = sorted(v for v in values if v is not None)
    if len(known) < len(values):  # a failed round fails the figure: never a median of survivors
        return None
    return known[len(known) // 2] if len(known) % 2 else (known[len(known) // 2 - 1] + known[len(known) // 2]) / 2


def _best(values):
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _ratio(a, b):
    return a / b if a is not None and b else None
