"""Memory of the whole process tree (asv's own peakmem_ sees the main process only)."""

from . import _grid as grid


class TreeMemory(grid.Measured):
    """Peak memory of the tree and the workers seen. Growth between epochs (a difference of a few
    MiB, often 0) is not tracked: it does not repeat to 10 %; a leak also raises the peaks, and
    profile shows growth."""

    params = [grid.IMPLEMENTATIONS, grid.WORKERS, grid.MULTIPROCESSING, grid.SIZES]
    param_names = ["implementation", "workers", "use_multiprocessing", "size"]
    group = "memory"
    # Memory depends on batches and workers, not on the per-batch cost.
    fixed = {"workload": "copy"}

    def setup_cache(self):
        return self.measure()

    setup_cache.timeout = grid.SWEEP_TIMEOUT_S

    def track_peak_tree_uss(self, cache, *params):
        return self.figure(cache, params, "peak_tree_uss_bytes")

    track_peak_tree_uss.unit = "bytes"

    def track_peak_tree_pss(self, cache, *params):
        return self.figure(cache, params, "peak_tree_pss_bytes")

    track_peak_tree_pss.unit = "bytes"

    def track_peak_tree_rss(self, cache, *params):
        return self.figure(cache, params, "peak_tree_rss_bytes")

    track_peak_tree_rss.unit = "bytes"

    def track_peak_main_rss(self, cache, *params):
        return self.figure(cache, params, "peak_main_rss_bytes")

    track_peak_main_rss.unit = "bytes"

    def track_workers_seen(self, cache, *params):
        return self.figure(cache, params, "workers_seen")

    track_workers_seen.unit = "count"
