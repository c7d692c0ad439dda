"""The table a person reads at a glance, and plain-language verdicts."""

from __future__ import annotations

from feedbench.core.spec import Spec
from feedbench.measure.setting import SettingResult

MIB = 1 << 20
COLUMNS = [
    ("workers", 7),
    ("mp", 3),
    ("samples/s", 10),
    ("1st batch s", 11),
    ("p95 ms", 7),
    ("tree USS MiB", 12),
    ("tree PSS MiB", 12),
    ("main RSS MiB", 12),
    ("alive", 5),
    ("leaks", 9),
    ("missing", 7),
    ("dup", 4),
    ("order", 5),
    ("repro", 5),
    ("=serial", 7),
    ("diversity", 9),
    ("rep.draws", 9),
    ("source", 7),
    ("aliased", 7),
    ("wrong x", 7),
    ("cover", 6),
]

# problem -> (what, why, fix)
VERDICTS = {
    "setting_not_applied": (
        "the dataset did not take the worker settings asked for: its figures are those of what ran",
        "its __init__ does not pass **kwargs to super().__init__(); Keras 3 reads workers, "
        "use_multiprocessing and max_queue_size there, so the dataset keeps the defaults (serial)",
        "def __init__(self, ..., **kwargs): super().__init__(**kwargs), and pass the settings when you build it",
    ),
    "never_delivered": (
        "samples never delivered in any epoch of the run",
        "__len__ is floor(n / batch_size) without shuffling (the last n % batch_size samples are never reached), "
        "or __getitem__ maps no index to them",
        "make __len__ ceil(n / batch_size) (a short last batch is fine), or shuffle so every sample gets its turn",
    ),
    "missing": (
        "samples not delivered in some epochs",
        "__len__ is too short (floor(n / batch_size) drops a different remainder every shuffled epoch), or "
        "__getitem__ skips indices or returns another batch in their place",
        "make __len__ ceil(n / batch_size) and map each index to its own rows",
    ),
    "duplicated": (
        "samples delivered more than once in an epoch",
        "__getitem__ returns the same rows for two indices",
        "derive each batch's rows from its index alone",
    ),
    "identical_batches": (
        "two batches of one epoch have identical bytes (own data: rows cannot be traced, whole batches can)",
        "__getitem__ returns the same batch for two indices (an index clipped or wrapped), or a generator repeats",
        "derive each batch's rows from its index alone",
    ),
    "in_order": (
        "an unshuffled run does not deliver samples in index order, and the dataset does not shuffle itself",
        "the generator reorders batches, or its rows depend on which worker asks first",
        "index rows by the batch index; shuffle on purpose, keyed by (seed, epoch)",
    ),
    "reproducible": (
        "running it again (a fresh process, the same seed) delivers different batches",
        "draws from an unseeded or global RNG (tf.random, np.random, Python's random: fit(shuffle=True) "
        "reorders PyDataset batches with it), threads racing on one seeded RNG, or workers whose "
        "batches arrive in whichever order they finish (the tf.data service across worker servers)",
        "draw from a generator keyed by (seed, epoch, batch index), like feedbench's keyed, and deliver "
        "batches in index order (a loader that promises none cannot be reproducible batch for batch)",
    ),
    "matches_serial": (
        "the stream under this setting differs from workers=1, use_multiprocessing=False",
        "global RNG state copied into forked workers, state changed where workers cannot see it, or "
        "writes into the source that threads share and processes do not",
        "make every batch a pure function of (seed, epoch, index) and never write into the source",
    ),
    "epoch_diversity": (
        "augmentation is frozen: samples get the same random draws every epoch",
        "the random state is reset to a constant (e.g. tf.random.set_seed or np.random.seed in __getitem__), "
        "or each epoch's new worker pool is forked from the same RNG state",
        "key draws on the epoch as well as the batch index",
    ),
    "repeated_draws": (
        "different batches received the identical random augmentation",
        "forked workers inherit one NumPy/TensorFlow RNG state and draw the same numbers, "
        "or a constant is reseeded before every batch",
        "seed a generator per batch from (seed, epoch, index) instead of using the global RNG",
    ),
    "aliased_batches": (
        "a batch was delivered in a buffer an earlier batch still lived in, or changed after it was delivered",
        "__getitem__ fills one preallocated array and returns it (or a view of it) every time: Keras's queue and "
        "TensorFlow's conversion keep references to that one array, so the next batch overwrites batches not yet "
        "trained on (worker processes pickle each batch, so they are spared)",
        "return a new array per batch (np.empty(...) inside __getitem__, or np.array(buffer) to copy it)",
    ),
    "mismatched_inputs": (
        "inputs delivered with another sample's label: the x of a row is not the sample its target names",
        "x and y shuffled or indexed separately, or one preallocated input buffer overwritten by the next batch "
        "while its labels were new arrays",
        "index x and y with the same indices, and return a new array per batch",
    ),
    "uneven_coverage": (
        "fit(steps_per_epoch) below the dataset's length: over the run some samples were seen more often than "
        "others (beyond one)",
        "with Keras's workers each epoch's pool starts over and drops or repeats the batches it had queued, so "
        "the epochs do not resume where the last one stopped (serially they do)",
        "give fit a steps_per_epoch of len(dataset) (or leave it out), or feed this serially; a dataset whose "
        "__getitem__ maps index and epoch to rows itself is spared",
    ),
    "leaked_memory": (
        "memory grows every epoch (a leak: it ends only when the machine runs out)",
        "the dataset keeps what it builds (a list of batches, a cache keyed by epoch or step, arrays appended to "
        "a module-level list), or a helper process it feeds does; with Keras's worker processes a leak that lives "
        "in the workers resets every epoch and shows as a high peak instead",
        "keep nothing per batch beyond the batch you return; bound every cache (functools.lru_cache(maxsize=...))",
    ),
    "leaked_threads": (
        "threads pile up: more are alive after every epoch",
        "a thread started per epoch or per batch (a prefetcher, a logger, a timer) that nobody stops or joins",
        "start helpers once, or stop and join them in on_epoch_end (and close()); prefer a pool you shut down",
    ),
    "leaked_files": (
        "open file descriptors pile up over epochs",
        "a file, socket or memory map opened in __getitem__ or on_epoch_end and kept (open() without a with "
        "block, handles kept in a list); the process runs out of descriptors (OSError: Too many open files)",
        "open data files once in __init__, or in a with block around each read",
    ),
    "leaked_processes": (
        "processes the generator started are still running after every epoch",
        "a helper process started per epoch (multiprocessing.Process, subprocess.Popen) and never joined or waited "
        "for; they pile up until the machine cannot start more",
        "join (or wait for) what you start before the epoch ends, or start one helper for the whole run and "
        "stop it in close()",
    ),
    "forked_tensorflow": (
        "TensorFlow ran inside forked worker processes after the process that forked them had started it: "
        "such a worker can deadlock or crash at random",
        "use_multiprocessing=True forks the workers (Linux's default); a fork copies TensorFlow's runtime "
        "(its thread pools, locks held at that instant) but not its threads, so an op in __getitem__ "
        "(tf.image, tf.random, tf.convert_to_tensor) can wait forever on a lock nobody releases; fit has "
        "always started TensorFlow before its first epoch's pool forks",
        "augment with NumPy in __getitem__ (a generator keyed by (seed, epoch, index)), or in the model "
        "(Keras preprocessing layers) or a tf.data map; or use threads (use_multiprocessing=False)",
    ),
    "source_intact": (
        "the generator wrote into its source arrays",
        "a slice like x[a:b] is a view: assigning into it writes the source; with threads (and the "
        "TensorFlow adapter's own reads of batches 0 and 1) this persists, in forked workers it does not",
        "copy the slice (np.array(x[a:b])) before changing it",
    ),
}


def _fmt(value, kind: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if kind == "mib":
        return f"{value / MIB:.0f}"
    if kind == "ms":
        return f"{value * 1e3:.1f}"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1000 else f"{value:.0f}"
    return str(value)


def _order(d) -> str:
    """Index order: 'own' where the dataset shuffles itself (informational, not a problem)."""
    return "own" if d.in_order is False and d.shuffles_itself else _fmt(d.in_order)


def _coverage(spread: int | None) -> str:
    """Coverage over the run with fewer steps than batches: how often samples were seen differs by at
    most one ('even'), or by more ('UNEVEN'); '-' where epochs are whole."""
    if spread is None:
        return "-"
    return "even" if spread <= 1 else "UNEVEN"


def _leaks(found: dict[str, str] | None) -> str:
    """The resources that leak, 'none', or '-' where no soak judged them."""
    if found is None:
        return "-"
    return ",".join(LEAK_SHORT[resource] for resource in found) or "none"


LEAK_SHORT = {"memory": "mem", "threads": "thr", "files": "fds", "processes": "proc"}


def setting_name(result: SettingResult) -> str:
    """'workers=2 mp=on', with what really ran where the dataset did not take the settings."""
    return _setting(result)


def _setting(result: SettingResult) -> str:
    asked = f"workers={result.workers} mp={'on' if result.use_multiprocessing else 'off'}"
    if result.applied:
        ran = f"workers={result.applied['workers']} mp={'on' if result.applied['use_multiprocessing'] else 'off'}"
        return f"{asked} (ran as {ran})"
    return asked


def _row(result: SettingResult) -> list[str]:
    t, m, d = result.throughput, result.memory, result.determinism
    speed = [_fmt(t.samples_per_s), _fmt(t.first_batch_s), _fmt(t.latency_p95_s, "ms")] if t else ["-"] * 3
    memory = (
        [
            _fmt(m.peak_tree_uss_bytes, "mib"),
            _fmt(m.peak_tree_pss_bytes, "mib"),
            _fmt(m.peak_main_rss_bytes, "mib"),
            _fmt(m.most_workers_alive),
            _leaks(m.leaks),
        ]
        if m
        else ["-"] * 5
    )
    stream = (
        [
            _fmt(d.missing),
            _fmt(d.duplicated),
            _order(d),
            _fmt(d.reproducible),
            _fmt(d.matches_serial),
            _fmt(d.epoch_diversity),
            _fmt(d.repeated_draws),
            _fmt(d.source_intact),
            _fmt(d.aliased_batches),
            _fmt(d.mismatched_inputs),
            _coverage(d.coverage_spread),
        ]
        if d
        else ["-"] * 11
    )
    workers, mp = str(result.workers), "on" if result.use_multiprocessing else "off"
    if result.applied:  # label the figures with what ran
        workers = f"{workers}>{result.applied['workers']}"
        mp = f"{mp}>{'on' if result.applied['use_multiprocessing'] else 'off'}"
    return [workers, mp, *speed, *memory, *stream]


def mode_of(spec: Spec) -> str:
    """The two modes, in words: what the determinism checks can see in each."""
    if spec.traced:
        return (
            "traced (the dataset is built on feedbench's arrays, whose targets carry sample ids: coverage, "
            "order and augmentation checks apply)"
        )
    return (
        "own data (rows cannot be traced to samples: throughput, memory, reproducibility, identical batches "
        "and matching serial are checked; coverage and augmentation checks are n/a)"
    )


def render(spec: Spec, results: list[SettingResult]) -> str:
    lines = [
        f"feedbench profile: {spec.impl}, {spec.n_samples} samples ({spec.size}), batch {spec.batch_size}, "
        f"workload {spec.workload}, shuffle {spec.shuffle}, seed {spec.seed}",
        f"mode: {mode_of(spec)}",
        "  ".join(f"{name:>{width}}" for name, width in COLUMNS),
    ]
    notes = []
    for result in results:
        if result.skipped:
            notes.append(f"workers={result.workers} mp={result.use_multiprocessing}: skipped, {result.skipped}")
            continue
        if result.error:
            notes.append(f"workers={result.workers} mp={result.use_multiprocessing}: FAILED: {result.error}")
            continue
        lines.append("  ".join(f"{cell:>{width}}" for cell, (_, width) in zip(_row(result), COLUMNS)))
    lines += notes
    lines += _verdicts(results)
    return "\n".join(lines)


def _verdicts(results: list[SettingResult]) -> list[str]:
    found: dict[str, list[str]] = {}
    for result in results:
        for problem in result.problems:
            found.setdefault(problem, []).append(_setting(result))
    checked = [r for r in results if r.ok and r.determinism is not None]
    lines = ["", "Verdicts:"]
    if not checked:
        lines.append("  no determinism verdict: no setting was measured (see the failures above)")
    elif not found:
        lines.append(
            f"  no determinism problem found in the {len(checked)} settings measured: every sample once "
            "per epoch, reproducible, the same under every setting"
        )
    soaked = [r for r in results if r.ok and r.memory is not None and r.memory.leaks is not None]
    if soaked and not any(p.startswith("leaked_") for p in found):
        lines.append(
            f"  no leak found over the soak in the {len(soaked)} settings soaked: memory, threads, open files and "
            "live processes flat from epoch to epoch (within noise)"
        )
    elif not soaked and any(r.ok and r.memory is not None for r in results):
        lines.append("  leaks not judged: the memory run was too short (feedbench profile --soak 8)")
    for problem, where in found.items():
        what, why, fix = VERDICTS[problem]
        lines.append(f"  * {what} [{problem}; {', '.join(where)}]")
        lines.append(f"    why: {why}")
        lines.append(f"    fix: {fix}")
        if problem == "uneven_coverage":
            lines += [
                f"    seen at {_setting(r)}: {r.determinism.coverage_note}"
                for r in results
                if problem in r.problems and r.determinism and r.determinism.coverage_note
            ]
        if problem.startswith("leaked_"):  # where it lives, and how fast it grows
            resource = problem.removeprefix("leaked_")
            lines += [
                f"    seen at {_setting(r)}: {r.memory.leaks[resource]}"
                for r in results
                if problem in r.problems and r.memory and r.memory.leaks and resource in r.memory.leaks
            ]
        if problem == "forked_tensorflow":  # where it ran (once), and every setting where it failed runs
            seen = [r for r in results if r.forked_tensorflow]
            shown = seen[:1] + [r for r in seen[1:] if "tried again" in r.forked_tensorflow]
            lines += [f"    seen at {_setting(r)}: {r.forked_tensorflow}" for r in shown]
    # A setting that runs TensorFlow in forked workers (deadlocks at random) is no one's to pick.
    measured = [
        r
        for r in results
        if r.ok and not r.applied and not r.forked_tensorflow and r.throughput and r.throughput.samples_per_s
    ]
    if measured:
        best = max(measured, key=lambda r: r.throughput.samples_per_s)
        serial = next((r for r in measured if r.workers == 1 and not r.use_multiprocessing), None)
        lines.append(
            f"  fastest: {_setting(best)} at {best.throughput.samples_per_s:.0f} samples/s"
            + (f", {best.throughput.samples_per_s / serial.throughput.samples_per_s:.2f}x serial" if serial else "")
        )
    return lines


# --------------------------------------------------------------------------- notebooks and plots

SHOWN = [  # (header, getter, kind) for the rich and HTML tables
    ("samples/s", lambda r: r.throughput and r.throughput.samples_per_s, ""),
    ("1st batch s", lambda r: r.throughput and r.throughput.first_batch_s, ""),
    ("tree PSS MiB", lambda r: r.memory and r.memory.peak_tree_pss_bytes, "mib"),
    ("workers alive", lambda r: r.memory and r.memory.most_workers_alive, ""),
    ("leaks", lambda r: r.memory and _leaks(r.memory.leaks), ""),
    ("missing", lambda r: r.determinism and r.determinism.missing, ""),
    ("reproducible", lambda r: r.determinism and r.determinism.reproducible, ""),
    ("=serial", lambda r: r.determinism and r.determinism.matches_serial, ""),
    ("rep. draws", lambda r: r.determinism and r.determinism.repeated_draws, ""),
]


def _cells(result: SettingResult) -> list[str]:
    if result.skipped:
        return [f"skipped: {result.skipped}"] + [""] * (len(SHOWN) - 1)
    if result.error:
        return [f"FAILED: {result.error}"] + [""] * (len(SHOWN) - 1)
    return [_fmt(get(result), kind) for _, get, kind in SHOWN]


def rich_table(spec: Spec, results: list[SettingResult], title: str):
    """The profile as a rich Table (a terminal, or rich's Jupyter display)."""
    from rich.table import Table

    view = Table(title=title, caption="\n".join(_verdicts(results)[2:]) or None)
    view.add_column("setting")
    for header, _, _ in SHOWN:
        view.add_column(header, justify="right")
    for result in results:
        bad = bool(result.problems or result.error)
        view.add_row(_setting(result), *_cells(result), style="red" if bad else None)
    return view


def html(spec: Spec, results: list[SettingResult], title: str, note: str | None = None) -> str:
    """The profile as an HTML table with its verdicts (Jupyter's rich display)."""
    import html as escape

    head = "".join(f"<th>{escape.escape(h)}</th>" for h in ["setting", *(h for h, _, _ in SHOWN)])
    rows = []
    for result in results:
        style = ' style="background:#fdd"' if result.problems or result.error else ""
        cells = "".join(f"<td>{escape.escape(c)}</td>" for c in [_setting(result), *_cells(result)])
        rows.append(f"<tr{style}>{cells}</tr>")
    verdicts = "".join(f"<li>{escape.escape(line.strip())}</li>" for line in _verdicts(results)[2:] if line.strip())
    return (
        f"<div class='feedbench-profile'><h4>{escape.escape(title)}</h4>"
        + (f"<p>{escape.escape(note)}</p>" if note else "")
        + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + f"<ul>{verdicts}</ul></div>"
    )


def plot(results: list[SettingResult], name: str):
    """Throughput and peak tree PSS against workers, threads and processes as two lines (matplotlib)."""
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for mp, label in ((False, "threads"), (True, "processes")):
        chosen = [r for r in results if r.use_multiprocessing == mp and r.ok and r.throughput]
        workers = [str(r.workers) for r in chosen]  # a categorical axis: worker counts, not a continuum
        speed.plot(workers, [r.throughput.samples_per_s or 0 for r in chosen], marker="o", label=label)
        memory.plot(
            workers,
            [(r.memory.peak_tree_pss_bytes or 0) / MIB if r.memory else 0 for r in chosen],
            marker="o",
            label=label,
        )
    speed.set(title=f"{name}: throughput", xlabel="workers", ylabel="samples/s")
    memory.set(title="memory of the process tree", xlabel="workers", ylabel="peak PSS (MiB)")
    for axis in (speed, memory):
        axis.legend()
    fig.tight_layout()
    return fig
