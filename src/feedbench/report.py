"""The table a person reads at a glance, and plain-language verdicts."""

from __future__ import annotations

from feedbench.generators import Spec
from feedbench.profile import VERDICTS

MIB = 1 << 20
COLUMNS = [
    ("workers", 7), ("mp", 3), ("samples/s", 10), ("1st batch s", 11), ("p95 ms", 7), ("tree USS MiB", 12),
    ("tree PSS MiB", 12), ("main RSS MiB", 12), ("procs", 5), ("growth MiB", 10), ("missing", 7), ("dup", 4),
    ("order", 5), ("repro", 5), ("=serial", 7), ("diversity", 9), ("rep.draws", 9), ("source", 7),
]


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


def _row(record: dict) -> list[str]:
    t, m, d = record.get("throughput") or {}, record.get("memory") or {}, record.get("determinism") or {}
    return [
        str(record["workers"]), "on" if record["use_multiprocessing"] else "off",
        _fmt(t.get("samples_per_s")), _fmt(t.get("first_batch_s")), _fmt(t.get("latency_p95_s"), "ms"),
        _fmt(m.get("peak_tree_uss_bytes"), "mib"), _fmt(m.get("peak_tree_pss_bytes"), "mib"),
        _fmt(m.get("peak_main_rss_bytes"), "mib"), _fmt(m.get("workers_seen")), _fmt(m.get("growth_bytes"), "mib"),
        _fmt(d.get("missing")), _fmt(d.get("duplicated")), _fmt(d.get("in_order")), _fmt(d.get("reproducible")),
        _fmt(d.get("matches_serial")), _fmt(d.get("epoch_diversity")), _fmt(d.get("repeated_draws")),
        _fmt(d.get("source_intact")),
    ]


def render(spec: Spec, records: list[dict]) -> str:
    lines = [
        f"feedbench profile: {spec.impl}, {spec.n_samples} samples ({spec.size}), batch {spec.batch_size}, "
        f"workload {spec.workload}, shuffle {spec.shuffle}, seed {spec.seed}",
        "  ".join(f"{name:>{width}}" for name, width in COLUMNS),
    ]
    notes = []
    for record in records:
        if record.get("skipped"):
            notes.append(f"workers={record['workers']} mp={record['use_multiprocessing']}: skipped, {record['skipped']}")
            continue
        if record.get("error"):
            notes.append(f"workers={record['workers']} mp={record['use_multiprocessing']}: FAILED: {record['error']}")
            continue
        lines.append("  ".join(f"{cell:>{width}}" for cell, (_, width) in zip(_row(record), COLUMNS)))
    lines += notes
    lines += _verdicts(records)
    return "\n".join(lines)


def _verdicts(records: list[dict]) -> list[str]:
    found: dict[str, list[str]] = {}
    for record in records:
        for problem in record.get("problems") or []:
            found.setdefault(problem, []).append(f"workers={record['workers']} mp={'on' if record['use_multiprocessing'] else 'off'}")
    measured = [r for r in records if r.get("throughput") and r["throughput"].get("samples_per_s")]
    lines = ["", "Verdicts:"]
    if not found:
        lines.append("  no determinism problem found: every sample once per epoch, reproducible, the same under every setting")
    for problem, where in found.items():
        what, why, fix = VERDICTS[problem]
        lines.append(f"  * {what} [{problem}; {', '.join(where)}]")
        lines.append(f"    why: {why}")
        lines.append(f"    fix: {fix}")
    if measured:
        best = max(measured, key=lambda r: r["throughput"]["samples_per_s"])
        serial = next((r for r in measured if r["workers"] == 1 and not r["use_multiprocessing"]), None)
        lines.append(
            f"  fastest: workers={best['workers']} mp={'on' if best['use_multiprocessing'] else 'off'} at "
            f"{best['throughput']['samples_per_s']:.0f} samples/s"
            + (f", {best['throughput']['samples_per_s'] / serial['throughput']['samples_per_s']:.2f}x serial" if serial else "")
        )
    return lines
