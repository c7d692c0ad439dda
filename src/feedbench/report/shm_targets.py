"""``feedbench shm-targets``, the rendering half: the measured ratios against their targets."""

from __future__ import annotations

from feedbench.run.shm_targets import COPY, MIB, TARGETS


def render(result: dict) -> str:
    def fmt(value):
        return "failed" if value is None else f"{value:,.0f}"

    lines = [
        f"shm targets on {result['machine']} ({result['cores']} cores), {result['when']}",
        "",
        "samples/s (median over epochs, then over rounds):",
    ]
    for workload, figures in result["samples_per_s"].items():
        lines.append(f"  {workload:<7}" + "  ".join(f"{name} {fmt(v)}" for name, v in figures.items()))
    lines.append("")
    for key, target in TARGETS.items():
        if key in result.get("not_measured", {}):
            lines.append(f"  {key:<32} {'n/a':>8}  target >= {target}x  ({result['not_measured'][key]})")
            continue
        value = result["ratios"][key]
        shown = "failed" if value is None else f"{value:.2f}x"
        why = result.get("failures", {}).get(key)
        shown = f"{shown} ({why})" if why else shown
        lines.append(f"  {key:<32} {shown:>8}  target >= {target}x  {'PASS' if result['passed'][key] else 'MISS'}")
    mem = result["memory"]
    if mem["peak_workers_uss_bytes"] is None:
        lines.append(f"  memory: failed ({mem['error']})")
    else:
        lines.append(
            f"  memory: workers' peak USS {mem['peak_workers_uss_bytes'] / MIB:.0f} MiB <= ring "
            f"{mem['ring_bytes'] / MIB:.0f} MiB + 64 MiB x {COPY.workers} workers = "
            f"{mem['workers_budget_bytes'] / MIB:.0f} MiB (tree {mem['peak_tree_uss_bytes'] / MIB:.0f} MiB)"
            f"  {'PASS' if result['passed']['memory'] else 'MISS'}"
        )
    bad = [d for d in result["determinism"] if not d["ok"]]
    lines.append(
        f"  determinism: {len(result['determinism']) - len(bad)} of {len(result['determinism'])} settings "
        f"with no missing or duplicated sample, reproducible, matching serial"
        f"  {'PASS' if result['passed']['determinism'] else 'MISS'}"
    )
    for d in bad:
        lines.append(
            f"    workers={d['workers']} use_multiprocessing={d['use_multiprocessing']} shuffle={d['shuffle']}: "
            f"{d['error'] or {k: d[k] for k in ('missing', 'duplicated', 'reproducible', 'matches_serial')}}"
        )
    return "\n".join(lines)
