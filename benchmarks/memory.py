"""Memory of the whole process tree (asv's own peakmem_ sees the main process only)."""

from . import _grid as grid


class TreeMemory:
    params = [grid.IMPLEMENTATIONS, grid.WORKERS, grid.MULTIPROCESSING, grid.SIZES]
    param_names = ["implementation", "workers", "use_multiprocessing", "size"]
    timeout = 60

    def setup_cache(self):
        # The copy workload: memory depends on batches and workers, not on the per-batch cost.
        params = [self.params[0], ["copy"], *self.params[1:]]
        return grid.measured(params, ("memory",))

    setup_cache.timeout = 3600

    def setup(self, cache, *params):
        grid.check_measured(cache, self._grid_params(params))

    @staticmethod
    def _grid_params(params):
        impl, workers, multiprocessing, size = params
        return (impl, "copy", workers, multiprocessing, size)

    def _figure(self, cache, params, key):
        return grid.figure(cache, self._grid_params(params), "memory", key)

    def track_peak_tree_uss(self, cache, *params):
        return self._figure(cache, params, "peak_tree_uss_bytes")

    track_peak_tree_uss.unit = "bytes"

    def track_peak_tree_pss(self, cache, *params):
        return self._figure(cache, params, "peak_tree_pss_bytes")

    track_peak_tree_pss.unit = "bytes"

    def track_peak_tree_rss(self, cache, *params):
        return self._figure(cache, params, "peak_tree_rss_bytes")

    track_peak_tree_rss.unit = "bytes"

    def track_peak_main_rss(self, cache, *params):
        return self._figure(cache, params, "peak_main_rss_bytes")

    track_peak_main_rss.unit = "bytes"

    def track_workers_seen(self, cache, *params):
        return self._figure(cache, params, "workers_seen")

    track_workers_seen.unit = "count"

    def track_growth(self, cache, *params):
        return self._figure(cache, params, "growth_bytes")

    track_growth.unit = "bytes"
