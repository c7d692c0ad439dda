"""``feedbench profile``: the three measurements over a grid of settings.

The settings are measured by :mod:`feedbench.sweep`, in a child process under
a time limit per setting: a generator that raises, hangs or changes shape
fails that setting with a one-line reason, and the other settings go on.
"""

from __future__ import annotations

import time
from dataclasses import replace

from feedbench import sweep
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
# The counts behind the verdicts, for the JSON and the asv benchmarks.
DETERMINISM_DETAIL_KEYS = (
    "source_rows_changed",
    "batches_differing_repeat",
    "batches_differing_serial",
    "dropped_by_design",
    "identified_by",
)

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
    """One record per setting, measured in a child process that a failing setting cannot take down."""
    specs = [replace(base, workers=w, use_multiprocessing=mp) for w, mp in grid]
    started = time.monotonic()

    def report(index, record):
        if progress:
            state = "skipped" if record.get("skipped") else ("FAILED: " + record["error"] if record.get("error") else "done")
            progress(f"[{index + 1}/{len(specs)}] workers={specs[index].workers} "
                     f"use_multiprocessing={specs[index].use_multiprocessing} {state} "
                     f"({time.monotonic() - started:.1f} s)")

    if progress:
        progress(f"measuring {len(specs)} settings, each under a limit of "
                 f"{sweep.setting_limit(sweep.MEASURES, timeout_s):g} s ...")
    return sweep.sweep(specs, sweep.MEASURES, epochs, timeout_s, plugins, report)


def measure_setting(spec: Spec, epochs: int, timeout_s: float, plugins=(), measures=sweep.MEASURES,
                    seeds: int = 1) -> dict:
    """The measurements of one setting, as a JSON-able record."""
    from feedbench.errors import FeedbenchError
    from feedbench.generators import build, get
    from feedbench.generators.spec import not_applicable
    from feedbench.measure import measure_determinism, measure_memory, measure_throughput

    record = sweep.empty_record(spec)
    try:
        # A built-in's family is known; only a plug-in must be built to tell.
        family = get(spec.impl, plugins).family or build(spec, plugins).family
        reasons = not_applicable(family, spec)
        if reasons:
            record["skipped"] = "; ".join(sorted(set(reasons.values())))
            return record
        if "throughput" in measures:
            throughput = measure_throughput(spec, epochs, timeout_s, plugins=plugins)
            record["throughput"] = {key: throughput.summary()[key] for key in THROUGHPUT_KEYS}
        if "memory" in measures:
            memory = measure_memory(spec, epochs, timeout_s, plugins=plugins)
            record["memory"] = {key: getattr(memory, key) for key in MEMORY_KEYS}
            if memory.growth_bytes is None:
                record["null_reasons"]["memory.growth_bytes"] = memory.growth_reason
        if "training" in measures:
            from feedbench.train import measure_training

            record["training"] = measure_training(spec, epochs, seeds, timeout_s, plugins).summary()
        if "fit_stream" in measures:
            from feedbench.tap import fit_stream

            record["fit_stream"] = fit_stream(build(spec, plugins), epochs, timeout_s).figures(spec.n_samples)
        if "determinism" not in measures:
            return record
        determinism = measure_determinism(spec, epochs, timeout_s, plugins=plugins)
        record["determinism"] = {key: getattr(determinism, key) for key in DETERMINISM_KEYS + DETERMINISM_DETAIL_KEYS}
        record["null_reasons"].update({f"determinism.{k}": v for k, v in determinism.reasons.items()})
        record["problems"] = determinism.problems()
    except (FeedbenchError, ValueError) as exc:
        record["error"] = str(exc).splitlines()[0]
    return record

