"""Training: does the generator cost accuracy, and does it starve fit?

Each setting trains feedbench's small task (feedbench.fit.training) for several
seeds, with the implementation and with the baseline ``model.fit(x, y)`` on
the same arrays in memory, from the same initial weights per seed. Shuffle
is on; the GPU variants run only where a GPU is present.
"""

from . import _grid as grid


class Training:
    """Accuracy against the baseline, and fit against its ceiling (starvation), per setting and device."""

    params = [grid.IMPLEMENTATIONS, grid.TRAINING_WORKERS, grid.MULTIPROCESSING, grid.DEVICES]
    param_names = ["implementation", "workers", "use_multiprocessing", "device"]
    timeout = 60

    def setup_cache(self):
        return grid.measured_training(self.params)

    setup_cache.timeout = grid.SWEEP_TIMEOUT_S

    def setup(self, cache, *params):
        grid.check_measured(cache, params, skip=grid.training_skip_reason)

    def _figure(self, cache, params, key):
        return grid.figure(cache, params, "training", key)

    def track_val_accuracy(self, cache, *params):
        """Final validation accuracy, mean over seeds."""
        return self._figure(cache, params, "val_accuracy")

    track_val_accuracy.unit = "fraction"

    # Ratios of figures measured in the same run, not differences near 0: 0.01 -> 0.02 would be a 2x
    # "regression" to asv. Fit's own samples/s is not tracked (five short epochs do not repeat to 10 %).

    def track_accuracy_over_baseline(self, cache, *params):
        """Mean accuracy over that of model.fit(x, y) on the same arrays, same initial weights (1: as good)."""
        return grid.ratio(cache, params, params, "training", "val_accuracy", "baseline_val_accuracy")

    track_accuracy_over_baseline.unit = "ratio"

    def track_fit_over_ceiling(self, cache, *params):
        """Fit samples/s with the generator over the ceiling: the same model fed one prepared batch over
        and over, in the same process (1: never waits for data; starvation is 1 minus this): each seed's
        ratio as a sample (the ceiling timed beside that seed), so asv records their median with its
        interval, and the report calls starvation within noise where that interval reaches 1."""
        ratio = grid.ratio(cache, params, params, "training", "fit_samples_per_s", "ceiling_samples_per_s")
        per_seed = grid.figure_list(cache, params, "training", "fit_over_ceiling_per_seed")
        if len(per_seed) < 2 or ratio != ratio:  # one seed, or n/a: the bare figure
            return ratio
        return {"samples": per_seed, "number": 1}

    track_fit_over_ceiling.unit = "ratio"
