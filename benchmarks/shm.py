"""shm's targets, tracked per commit: ratios measured in one run (feedbench.run.shm_targets)."""

from feedbench.core.quiet import start_tensorflow_quietly

from . import _grid as grid

SUITE_ROUNDS = 1
QUICK_SKIP = "the quick grid leaves shm's targets out; the full grid or `feedbench shm-targets` measures them"


class Targets:
    """shm against keyed under Keras's own pools; higher is better for the ratios."""

    timeout = 60

    def setup_cache(self):
        if grid.QUICK:
            # A smoke run leaves them out: they would be half of its time.
            return {"skipped": QUICK_SKIP}
        start_tensorflow_quietly()  # asv shows its stderr: TensorFlow's start-up lines held back
        from feedbench.run import shm_targets

        # One round, not feedbench shm-targets' three: the full run's budget is 30 min, and each
        # figure already times its epochs for a second or more (feedbench.measure.throughput).
        return shm_targets.measure(repeats=SUITE_ROUNDS)

    setup_cache.timeout = 1800

    def setup(self, result, *params):
        if "skipped" in result:
            raise NotImplementedError(result["skipped"])
        # A peer that is not installed here is n/a: asv skips on NotImplementedError in setup only.
        if len(params) == 2:
            key = f"{params[0]}_vs_best_{params[1]}"
            if key in result.get("not_measured", {}):
                raise NotImplementedError(result["not_measured"][key])

    def _ratio(self, result, key):
        if key in result.get("not_measured", {}):
            raise grid.SkipNotImplemented(result["not_measured"][key])  # a peer not installed here: n/a
        value = result["ratios"][key]
        if value is None:
            raise RuntimeError(f"{key}: a setting it compares failed")
        return value

    def track_copy_vs_keyed_processes(self, result):
        """copy workload, large source: shm 2 workers / keyed with Keras's 2 processes (target >= 3)."""
        return self._ratio(result, "copy_vs_keyed_processes")

    track_copy_vs_keyed_processes.unit = "ratio"

    def track_copy_vs_best_threads(self, result):
        """copy workload, large source: shm 2 workers / the best keyed thread setting (target >= 0.9)."""
        return self._ratio(result, "copy_vs_best_threads")

    track_copy_vs_best_threads.unit = "ratio"

    def track_python_vs_best_threads(self, result):
        """GIL-holding python workload: shm 2 workers / the best keyed thread setting (target >= 1.6)."""
        return self._ratio(result, "python_vs_best_threads")

    track_python_vs_best_threads.unit = "ratio"

    def track_copy_fit_shuffle_vs_not(self, result):
        """copy workload, large source: shm under fit(shuffle=True) / under shuffle=False (target >= 0.9)."""
        return self._ratio(result, "copy_fit_shuffle_vs_not")

    track_copy_fit_shuffle_vs_not.unit = "ratio"

    def track_copy_step_bound_vs_ceiling(self, result):
        """CPU stand-in for a GPU step (20 ms, GIL released): shm 2 workers / one prepared batch (target >= 0.9)."""
        return self._ratio(result, "copy_step_bound_vs_ceiling")

    track_copy_step_bound_vs_ceiling.unit = "ratio"

    def track_vs_best_peer(self, result, workload, peer):
        """shm 2 workers / the best setting of a loader users pick instead (target >= 1.0)."""
        return self._ratio(result, f"{workload}_vs_best_{peer}")

    track_vs_best_peer.params = [["copy", "python"], ["torch_dataloader", "grain"]]
    track_vs_best_peer.param_names = ["workload", "peer"]
    track_vs_best_peer.unit = "ratio"

    def track_workers_uss_over_budget(self, result):
        """Workers' peak USS / (ring + 64 MiB per worker): at most 1."""
        memory = result["memory"]
        if memory["peak_workers_uss_bytes"] is None:
            raise RuntimeError(f"memory: {memory['error']}")
        return memory["peak_workers_uss_bytes"] / memory["workers_budget_bytes"]

    track_workers_uss_over_budget.unit = "ratio"

    def track_determinism_failures(self, result):
        """Settings with a missing or duplicated sample, not reproducible or not matching serial: 0."""
        return sum(1 for d in result["determinism"] if not d["ok"])

    track_determinism_failures.unit = "count"
