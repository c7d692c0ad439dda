"""Resources that pile up over epochs: memory, threads, open files, live processes.

NOTE [ Leak verdicts ]
Each resource is read at every epoch's end, in two places:

- the *main* process, between epochs (after ``on_epoch_end``: Keras's worker pool for the epoch
  has stopped): its anonymous memory (``Anonymous`` of /proc/PID/smaps_rollup: pages it owns,
  whether or not a forked worker still shares them, so a pool that comes or goes or a worker that
  stops sharing pages does not move it), its threads and its open descriptors; and the processes
  still alive below it that are not Keras's pool workers (helpers the generator started and left);
- the *workers*, over the epoch (the memory sampler's readings, the pool alive): the largest
  private memory (USS), threads and descriptors per process below the main one (per process, so
  a helper process left running counts as a process, not as the workers' threads or memory).

The first epoch is a warm-up (imports, caches, TensorFlow's lazy start) and is left out. Over the
epochs after it, a resource leaks where its robust slope (Theil-Sen: the median of the slopes
between every two epochs) is significant by Mann-Kendall's trend test (one-sided, 1 %: at least
``MIN_READINGS`` epochs are needed for a steady rise to reach it), its 90 % interval (Sen's)
excludes 0, and it is at least ``FLOORS[resource]`` per epoch (memory: the interval's low end). A
slope whose interval includes 0 is reported as 0: growth within noise. A steady leak shows from the
shortest soak; one of a thread or a descriptor every other epoch is certain to show from a soak
of 8 epochs (with 7 it depends on which epoch it starts in). A descriptor leak of the main process
is its own, not also the leak of the workers forked from it (they inherit the descriptors).

What it cannot see: a leak that lives only in Keras's worker processes, which Keras re-creates
every epoch, resets with them (it raises each epoch's peak, ``epoch_peak_pss_added_bytes``, not a
slope); a leak smaller than the floor; growth that stops before the run ends (a cache that fills
up is no leak). Memory is read after the allocator gave its free pages back (``release_free_heap``).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import statistics
import time
from dataclasses import dataclass

import psutil

from feedbench.core import procs
from feedbench.core.records import Record

RESOURCES = ("memory", "threads", "files", "processes")
WARM_UP_EPOCHS = 1
MIN_READINGS = 6  # epoch ends judged, after the warm-up: the soak is WARM_UP_EPOCHS + MIN_READINGS epochs
MIN_EPOCHS = WARM_UP_EPOCHS + MIN_READINGS
TREND_Z = 2.326  # Mann-Kendall, one-sided 1 %
INTERVAL_Z = 1.645  # Sen's interval of the slope, 90 %
MIB = 1 << 20
# The smallest growth per epoch called a leak: the allocator's own drift between epochs is of the
# order of 100 KiB, and a thread, descriptor or process every other epoch is already a leak.
FLOORS = {"memory": 1.0 * MIB, "threads": 0.5, "files": 0.5, "processes": 0.5}
THREAD_BYTES = 2 * MIB  # what a leaked thread may hold: its stack's touched pages and an allocator arena
# (resource, place) -> the reading's field
SERIES = {
    ("memory", "main"): "main_memory_bytes",
    ("memory", "workers"): "workers_memory_bytes",
    ("threads", "main"): "main_threads",
    ("threads", "workers"): "workers_threads",
    ("files", "main"): "main_files",
    ("files", "workers"): "workers_files",
    ("processes", "main"): "processes_left",
}
PLACES = {
    "main": "the main process",
    "workers": "each worker process",
}
UNITS = {"memory": "MiB", "threads": "threads", "files": "open descriptors", "processes": "processes"}


@dataclass
class ResourceReading(Record):
    """One epoch's end: the main process between epochs, the workers' largest readings over the epoch."""

    epoch: int
    main_memory_bytes: int  # anonymous memory of the main process
    main_threads: int
    main_files: int
    processes_left: int  # live processes below the main one that are not Keras's pool workers
    workers_memory_bytes: int = 0  # private memory (USS) per live process below the main one
    workers_threads: int = 0  # per process, as are the descriptors
    workers_files: int = 0
    workers: int = 0  # the most live processes below the main one in the epoch


@dataclass
class Trend:
    """A resource's growth per epoch over the judged epochs."""

    slope: float  # Theil-Sen, per epoch
    low: float  # Sen's 90 % interval
    high: float
    z: float  # Mann-Kendall's trend statistic (0 for a flat series)
    readings: int

    @property
    def significant(self) -> bool:
        return self.z >= TREND_Z and self.low > 0

    @property
    def growth(self) -> float:
        """The slope where it is significant, else 0: within noise (never negative)."""
        return self.slope if self.significant else 0.0


def trend(values: list[float]) -> Trend:
    """Theil-Sen slope per step, Sen's interval and Mann-Kendall's z of a series of readings."""
    n = len(values)
    if n < 2:
        raise ValueError(f"{n} readings given; expected 2 or more for a trend")
    slopes = sorted((values[j] - values[i]) / (j - i) for i in range(n) for j in range(i + 1, n))
    s = sum((values[j] > values[i]) - (values[j] < values[i]) for i in range(n) for j in range(i + 1, n))
    ties = [values.count(v) for v in set(values)]
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties)) / 18
    z = (s - math.copysign(1, s)) / math.sqrt(var) if var > 0 and s != 0 else 0.0
    if var > 0:
        spread = INTERVAL_Z * math.sqrt(var)
        lower = max(0, math.floor((len(slopes) - spread) / 2) - 1)  # the M1-th slope, counted from 1
        upper = min(len(slopes) - 1, math.ceil((len(slopes) + spread) / 2))
        low, high = slopes[lower], slopes[upper]
    else:
        low = high = slopes[len(slopes) // 2]
    return Trend(statistics.median(slopes), low, high, z, n)


def judge(readings: list[ResourceReading]) -> tuple[dict[tuple[str, str], Trend], str | None]:
    """The trend of every series over the judged epochs, or ({}, why there is none)."""
    judged = [r for r in readings if r.epoch >= WARM_UP_EPOCHS]
    if len(judged) < MIN_READINGS:
        return {}, (
            f"leak verdicts need {MIN_EPOCHS} or more epochs (the first is a warm-up; a trend needs "
            f"{MIN_READINGS} epoch ends after it); ran {len(readings)} (feedbench profile --soak {MIN_EPOCHS + 1})"
        )
    return {key: trend([getattr(r, field) for r in judged]) for key, field in SERIES.items()}, None


def leaking(key: tuple[str, str], found: Trend, allowance: float = 0.0) -> bool:
    """Significant, and at least the floor above ``allowance`` (growth that something else explains).
    Memory must clear the floor with its whole 90 % interval: TensorFlow's and the allocator's drift
    comes in uneven steps whose median slope can reach the floor, a leak rises evenly."""
    growth = found.low if key[0] == "memory" else found.slope
    return found.significant and growth - allowance >= FLOORS[key[0]]


def find(trends: dict[tuple[str, str], Trend]) -> list[tuple[str, str]]:
    """The (resource, place) series that leak. Memory that grows with leaked threads in the same
    place, up to ``THREAD_BYTES`` each, is theirs (a stack and an allocator arena), not a leak of its own."""
    found = [key for key, value in trends.items() if key[0] != "memory" and leaking(key, value)]
    if ("files", "main") in found and ("files", "workers") in found:  # forked workers inherit the descriptors
        found.remove(("files", "workers"))
    for place in PLACES:
        memory, threads = trends.get(("memory", place)), trends.get(("threads", place))
        if memory is None:
            continue
        allowance = THREAD_BYTES * threads.growth if ("threads", place) in found else 0.0
        if leaking(("memory", place), memory, allowance):
            found.append(("memory", place))
    return sorted(found, key=lambda key: (RESOURCES.index(key[0]), key[1]))


def describe(key: tuple[str, str], found: Trend) -> str:
    """'the main process: +6.1 MiB per epoch (90 % interval 5.9 to 6.3) over 7 epochs'."""
    resource, place = key
    scale = MIB if resource == "memory" else 1
    where = "left running after each epoch" if resource == "processes" else PLACES[place]
    return (
        f"{where}: {found.slope / scale:+.3g} {UNITS[resource]} per epoch (90 % interval "
        f"{found.low / scale:.3g} to {found.high / scale:.3g}) over {found.readings} epochs"
    )


# --------------------------------------------------------------------------- reading the process tree


def anonymous_bytes(pid: int) -> int:
    """A process's anonymous memory (Linux smaps_rollup), unchanged by sharing with forked children;
    elsewhere its USS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return psutil.Process(pid).memory_full_info().uss


def release_free_heap() -> None:
    """Give the allocator's free pages back to the system (glibc's ``malloc_trim``), so memory a
    per-epoch pool freed but the heap kept does not read as growth; a no-op elsewhere."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def open_files(proc: psutil.Process) -> int:
    return proc.num_fds() if hasattr(proc, "num_fds") else proc.num_handles()


def _live(exclude: set[int] = frozenset()) -> list[psutil.Process]:
    found = []
    for proc in procs.descendants():
        try:
            if proc.pid not in exclude and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def read_main(epoch: int, pool_workers: set[int], settle_s: float = 1.0) -> ResourceReading:
    """The main process between epochs: read until two readings 50 ms apart agree (threads and
    descriptors of a pool that just stopped are going), at most ``settle_s``."""
    gc.collect()  # what waits only for the cycle collector (a freed pool, an iterator) is no leak
    release_free_heap()
    me = psutil.Process()
    deadline = time.monotonic() + settle_s
    last = None
    while True:
        now = (me.num_threads(), open_files(me), len(_live(pool_workers)))
        if now == last or time.monotonic() > deadline:
            break
        last = now
        time.sleep(0.05)
    threads, files, left = now
    return ResourceReading(epoch, anonymous_bytes(os.getpid()), threads, files, left)
