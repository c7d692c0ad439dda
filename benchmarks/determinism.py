"""Determinism of the delivered stream: counts and fractions (0 is good unless said)."""

from . import _grid as grid


class Stream:
    params = [grid.IMPLEMENTATIONS, grid.WORKERS, grid.MULTIPROCESSING]
    param_names = ["implementation", "workers", "use_multiprocessing"]
    timeout = 60

    def setup_cache(self):
        # Workloads are deterministic by construction, so the copy workload on the
        # small source speaks for all of them.
        params = [self.params[0], ["copy"], *self.params[1:], ["small"]]
        return grid.measured(params, ("determinism",))

    setup_cache.timeout = 3600

    def setup(self, cache, *params):
        grid.check_measured(cache, self._grid_params(params))

    @staticmethod
    def _grid_params(params):
        impl, workers, multiprocessing = params
        return (impl, "copy", workers, multiprocessing, "small")

    def _figure(self, cache, params, key):
        return grid.figure(cache, self._grid_params(params), "determinism", key)

    def track_missing(self, cache, *params):
        return self._figure(cache, params, "missing")

    track_missing.unit = "count"

    def track_duplicated(self, cache, *params):
        return self._figure(cache, params, "duplicated")

    track_duplicated.unit = "count"

    def track_batches_differing_from_repeat(self, cache, *params):
        return self._figure(cache, params, "batches_differing_repeat")

    track_batches_differing_from_repeat.unit = "count"

    def track_batches_differing_from_serial(self, cache, *params):
        return self._figure(cache, params, "batches_differing_serial")

    track_batches_differing_from_serial.unit = "count"

    def track_epoch_diversity(self, cache, *params):
        """Fraction of samples whose content changes between epochs (1 is good)."""
        return self._figure(cache, params, "epoch_diversity")

    track_epoch_diversity.unit = "fraction"

    def track_repeated_draws(self, cache, *params):
        return self._figure(cache, params, "repeated_draws")

    track_repeated_draws.unit = "count"

    def track_source_rows_changed(self, cache, *params):
        return self._figure(cache, params, "source_rows_changed")

    track_source_rows_changed.unit = "count"
