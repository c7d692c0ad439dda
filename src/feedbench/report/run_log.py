"""What an ``asv run`` did, in a few lines, from its log (``feedbench report --log``).

asv prints every parameter combination a benchmark skips with its reason, so one reason repeats
for every combination it covers. The summary counts the benchmarks, names the failed ones, and
gives each n/a reason once with how many results it covers.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

# "[ 2.38%] ··· determinism.Stream.track_forked_tensorflow     ok" (a long name is cut to "...name");
# a benchmark without parameters shows its value where the others show ok
_HEADLINE = re.compile(r"^\[\s*[\d.]+%\] ·{3} (?!Setting up)(?P<name>[\w.]+)\s{2,}(?P<status>\S+)\s*$")
_SKIPPED = re.compile(r"asv: skipped: (?:\w+Error)?\((?P<quote>['\"])(?P<reason>.*)(?P=quote)\)\s*$")
_ENVIRONMENT = re.compile(r"^\[\s*[\d.]+%\] ·{2} Benchmarking (?P<env>\S+)")
_SETUP_FAILED = re.compile(r"^\[\s*[\d.]+%\] ·{3} Setting up (?P<name>\S+)\s+failed\s*$")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One asv run, as its log tells it.

    Attributes:
        statuses: (asv environment, benchmark) -> ok, failed or n/a (a benchmark none of whose
            combinations ran).
        skipped: n/a reason -> how many parameter combinations it covers.
        setup_failed: the setup_cache functions that failed (every benchmark reading them fails).
    """

    statuses: dict[tuple[str, str], str] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    setup_failed: tuple[str, ...] = ()

    @property
    def failed(self) -> list[str]:
        """The failed benchmarks, each with its environment where the run had several."""
        several = len({env for env, _ in self.statuses}) > 1
        return [
            f"{name} ({env})" if several else name
            for (env, name), status in self.statuses.items()
            if status == "failed"
        ]


def summarize(text: str) -> RunSummary:
    statuses: dict[tuple[str, str], str] = {}
    skipped: Counter = Counter()
    setup_failed = []
    env = ""
    for line in text.splitlines():
        if found := _ENVIRONMENT.match(line):
            env = found["env"]
        elif found := _HEADLINE.match(line):
            status = found["status"]
            statuses[(env, found["name"])] = {"skipped": "n/a", "n/a": "n/a", "failed": "failed"}.get(status, "ok")
        elif found := _SKIPPED.search(line):
            skipped[found["reason"].replace("\\'", "'")] += 1
        elif found := _SETUP_FAILED.match(line):
            setup_failed.append(found["name"])
    return RunSummary(statuses, skipped, tuple(setup_failed))


def lines(summary: RunSummary, log_path: str, reasons: int = 12) -> list[str]:
    """The summary in words: totals, failed benchmarks by name, n/a reasons once each."""
    count = Counter(summary.statuses.values())
    out = [
        f"feedbench: {len(summary.statuses)} benchmarks ran: {count['ok']} ok, {count['failed']} failed, "
        f"{count['n/a']} n/a; {sum(summary.skipped.values())} parameter combinations n/a "
        f"for {len(summary.skipped)} reason(s)"
    ]
    for name in summary.setup_failed:
        out.append(f"  setup failed: {name} (every benchmark that reads it failed)")
    for name in summary.failed:
        out.append(f"  failed: {name}")
    for reason, times in summary.skipped.most_common(reasons):
        out.append(f"  n/a x{times}: {reason}")
    if len(summary.skipped) > reasons:
        out.append(f"  ... and {len(summary.skipped) - reasons} more n/a reasons")
    out.append(f"  the full asv log: {log_path}")
    return out
