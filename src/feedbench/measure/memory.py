"""Memory of the whole process tree, sampled while a run goes.

A sampler thread reads the main process and every descendant (found again at
every sample, so pools created mid-run are seen) every ``interval_s``. USS is
memory only that process holds; PSS splits shared pages between the sharers.
Summed over the tree they are the honest figures, PSS the more complete: after
a fork the parent's pages are shared with its children, so they leave the
parent's USS and count in nobody's (tree USS can even drop when workers start). RSS counts pages that forked
workers share with their parent once per process, so its sum overstates; and
the main process's RSS alone is what asv's ``peakmem_`` would see.

``peak_tree_pss_added_bytes`` is the peak tree PSS minus the tree's PSS just
before the run (TensorFlow imported, the source built): what feeding adds. The
totals are mostly TensorFlow's own import, which moves by a hundred MiB and
more at different hours with nothing changed; what the run adds repeats.

``epoch_peak_pss_added_bytes`` is the same per epoch (the largest sample from
the end of one epoch to the end of the next), the median over the epochs: the
figure a regression tracker compares. The largest of all samples is one
extreme: a forked worker that copies its parent's pages in one epoch (Python's
reference counts and garbage collector write into pages it shares with the
parent) raised it from 35 to 100 MiB between two runs of one commit; the
median epoch is what a leak or a larger buffer moves, not one epoch's chance.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
from dataclasses import asdict, dataclass, field, fields

import psutil

from feedbench.core import procs
from feedbench.core.records import Record
from feedbench.core.spec import Spec
from feedbench.fit import driver, keras_api
from feedbench.fit.supervise import DEFAULT_TIMEOUT_S
from feedbench.generators import build
from feedbench.measure import leaks

DEFAULT_INTERVAL_S = 0.025


@dataclass
class TreeSample:
    uss: int
    pss: int
    rss: int
    main_rss: int
    pids: frozenset
    workers_uss: int = 0
    workers_threads: int = 0
    workers_files: int = 0


def sample_tree(before: frozenset = frozenset()) -> TreeSample:
    """One reading of this process and all its descendants; the processes in ``before`` (alive
    before the run) count in the tree's totals, not as workers."""
    uss = pss = rss = 0
    main_rss = workers_uss = workers_threads = workers_files = 0
    pids = []
    for proc in [psutil.Process(), *procs.descendants()]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # a worker that ended between listing and reading
        uss += info.uss
        pss += getattr(info, "pss", info.uss)
        rss += info.rss
        pids.append(proc.pid)
        if proc.pid == os.getpid():
            main_rss = info.rss
        elif proc.pid not in before:
            workers_uss += info.uss
            try:
                workers_threads += proc.num_threads()
                workers_files += leaks.open_files(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass  # ended meanwhile: its memory was read
    return TreeSample(uss, pss, rss, main_rss, frozenset(pids), workers_uss, workers_threads, workers_files)


@dataclass
class MemoryFigures(Record):
    """The memory figures of a setting that a report shows (bytes, and a count of processes)."""

    peak_tree_uss_bytes: int | None = None
    peak_tree_pss_bytes: int | None = None
    peak_tree_rss_bytes: int | None = None
    peak_main_rss_bytes: int | None = None
    peak_workers_uss_bytes: int | None = None
    peak_tree_pss_added_bytes: int | None = None
    epoch_peak_pss_added_bytes: int | None = None  # each epoch's peak above the baseline, the median
    workers_seen: int | None = None  # worker processes started over the run (Keras starts a pool per epoch)
    most_workers_alive: int | None = None  # the most processes alive below the main one at once
    # Growth per epoch over a soak (leaks.py, NOTE [ Leak verdicts ]): 0 within noise, never below.
    growth_memory_main_bytes: float | None = None
    growth_memory_workers_bytes: float | None = None
    growth_threads_main: float | None = None
    growth_threads_workers: float | None = None
    growth_files_main: float | None = None
    growth_files_workers: float | None = None
    growth_processes: float | None = None
    leaks: dict[str, str] | None = None  # resource -> where it leaks and how fast, for each that leaks


@dataclass(kw_only=True)
class MemoryResult(MemoryFigures):
    """The figures (``MemoryFigures``; the growth of each resource filled in from its trend where a
    soak judged it), and the raw readings they were computed from."""

    epoch_peak_reason: str | None = None  # why epoch_peak_pss_added_bytes is None
    baseline_uss_bytes: int  # the tree before the run started
    baseline_pss_bytes: int
    samples: int
    interval_s: float
    epoch_peak_pss_bytes: list[int]  # each epoch's largest tree PSS
    resources: list[leaks.ResourceReading] = field(default_factory=list)  # at every epoch's end
    trends: dict[tuple[str, str], leaks.Trend] = field(default_factory=dict)  # (resource, place) -> trend
    leak_reason: str | None = None  # why there are no trends

    def __post_init__(self):
        for (resource, place), value in self.trends.items():
            name = f"growth_{resource}" if resource == "processes" else f"growth_{resource}_{place}"
            setattr(self, name + ("_bytes" if resource == "memory" else ""), value.growth)
        if self.trends:
            self.leaks = self.leaking()

    def to_dict(self) -> dict:
        found = asdict(self)
        found["trends"] = {"/".join(key): asdict(value) for key, value in self.trends.items()}
        return found

    def leaking(self) -> dict[str, str]:
        """resource -> where it leaks and how fast, for each resource that leaks."""
        found: dict[str, list[str]] = {}
        for key in leaks.find(self.trends):
            found.setdefault(key[0], []).append(leaks.describe(key, self.trends[key]))
        return {resource: "; ".join(lines) for resource, lines in found.items()}

    def problems(self) -> list[str]:
        return [f"leaked_{resource}" for resource in self.leaking()]

    def figures(self) -> MemoryFigures:
        """The figures alone, as reports and asv read them."""
        return MemoryFigures(**{f.name: getattr(self, f.name) for f in fields(MemoryFigures)})


_NO_WORKERS = {"workers_memory_bytes": 0, "workers_threads": 0, "workers_files": 0, "workers": 0}


class _Sampler:
    def __init__(self, interval_s: float, before: frozenset = frozenset()):
        self.interval_s = interval_s
        self.before = before | {os.getpid()}  # not workers: this process, and those alive before the run
        self.peak = TreeSample(0, 0, 0, 0, frozenset(), 0)
        self.epoch_pss = 0  # the largest tree PSS since the last epoch ended
        self.epoch_peaks: list[int] = []  # each finished epoch's largest tree PSS
        self.epoch_workers = _NO_WORKERS  # the workers' largest readings in this epoch (ResourceReading fields)
        self.pids: set[int] = set()
        self.count = 0
        self.most_alive = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="feedbench-memory", daemon=True)

    def take(self, end_epoch: bool = False) -> TreeSample:
        """One reading; with ``end_epoch`` it also closes the epoch (``epoch_peaks``) in the same
        locked step, so a reading of the sampler thread never falls between the two."""
        sample = sample_tree(self.before)
        alive = len(sample.pids - self.before)
        with self._lock:
            self.count += 1
            self.pids |= sample.pids
            self.most_alive = max(self.most_alive, alive)
            self.peak = TreeSample(
                max(self.peak.uss, sample.uss),
                max(self.peak.pss, sample.pss),
                max(self.peak.rss, sample.rss),
                max(self.peak.main_rss, sample.main_rss),
                frozenset(),
                max(self.peak.workers_uss, sample.workers_uss),
            )
            self.epoch_pss = max(self.epoch_pss, sample.pss)
            count = max(1, alive)
            workers = {  # per worker process: a process the generator left running is no worker's growth
                "workers_memory_bytes": sample.workers_uss // count,
                "workers_threads": sample.workers_threads // count,
                "workers_files": sample.workers_files // count,
                "workers": alive,
            }
            self.epoch_workers = {key: max(value, workers[key]) for key, value in self.epoch_workers.items()}
            if end_epoch:  # the next epoch starts from this reading
                self.epoch_peaks.append(self.epoch_pss)
                self.epoch_pss = sample.pss
        return sample

    def close_workers_epoch(self) -> dict[str, int]:
        """The workers' largest readings in the epoch that just ended (its pool is gone); the next
        epoch starts from nothing."""
        with self._lock:
            found, self.epoch_workers = self.epoch_workers, _NO_WORKERS
        return found

    def _run(self):
        while not self._stop.wait(self.interval_s):
            self.take()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure_memory(
    spec: Spec,
    epochs: int = 3,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    plugins=(),
) -> MemoryResult:
    if not 0.01 <= interval_s <= 0.05:
        raise ValueError(f"interval_s={interval_s} given; expected 0.01 to 0.05 seconds")
    others = frozenset(procs.descendant_pids())  # not the run's: processes alive before the dataset was built
    built = build(spec, plugins)
    main = os.getpid()
    baseline = sample_tree(others)
    pools_before = len(keras_api.STARTED_WORKERS)
    resources: list[leaks.ResourceReading] = []

    def between_epochs(epoch: int) -> None:  # the epoch's pool stopped: the main process alone
        workers = sampler.close_workers_epoch()
        reading = leaks.read_main(epoch, set(keras_api.STARTED_WORKERS[pools_before:]) | others)
        reading.__dict__.update(workers)
        resources.append(reading)

    with _Sampler(interval_s, others) as sampler:
        sampler.take()
        last_step = built.expected_batches - 1
        drive = driver.drive(built, epochs, timeout_s, materialize=False, between_epochs=between_epochs)
        with contextlib.closing(drive) as batches:
            for batch in batches:
                if batch.step == 0:
                    sampler.take()  # while the epoch's pool is surely alive: a short epoch can fall between samples
                if batch.step == last_step:
                    sampler.take(end_epoch=True)
    if sampler.epoch_peaks:
        epoch_added, epoch_reason = int(statistics.median(sampler.epoch_peaks)) - baseline.pss, None
    else:  # an epoch ends at its last expected batch: none came (the loader delivered fewer)
        epoch_added, epoch_reason = None, f"no epoch delivered its {built.expected_batches} expected batches"
    started = set(keras_api.STARTED_WORKERS[pools_before:])  # Keras's pools, even the short-lived ones
    workers = len((sampler.pids | started) - {main} - baseline.pids)
    trends, leak_reason = leaks.judge(resources)
    return MemoryResult(
        peak_tree_uss_bytes=sampler.peak.uss,
        peak_tree_pss_bytes=sampler.peak.pss,
        peak_tree_rss_bytes=sampler.peak.rss,
        peak_main_rss_bytes=sampler.peak.main_rss,
        peak_workers_uss_bytes=sampler.peak.workers_uss,
        peak_tree_pss_added_bytes=sampler.peak.pss - baseline.pss,
        epoch_peak_pss_added_bytes=epoch_added,
        epoch_peak_reason=epoch_reason,
        workers_seen=workers,
        most_workers_alive=sampler.most_alive,
        baseline_uss_bytes=baseline.uss,
        baseline_pss_bytes=baseline.pss,
        samples=sampler.count,
        interval_s=interval_s,
        epoch_peak_pss_bytes=sampler.epoch_peaks,
        resources=resources,
        trends=trends,
        leak_reason=leak_reason,
    )
