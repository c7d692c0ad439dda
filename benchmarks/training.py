"""Training: does the generator cost accuracy, and does it starve fit?

Each setting trains feedbench's small task (feedbench.fit.training) for several
seeds, with the implementation and with the baseline ``model.fit(x, y)`` on
the same arrays in memory, from the same initial weights per seed. Shuffle
is on; the GPU variants run only where a GPU is present.
"""

from . import _grid as grid


class Training:
    """Accuracy against the baseline, fit throughput and starvation, per setting and device."""

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

    def track_val_accuracy_spread(self, cache, *params):
        """Standard deviation of the final validation accuracy over seeds."""
        return self._figure(cache, params, "val_accuracy_spread")

    track_val_accuracy_spread.unit = "fraction"

    def track_accuracy_vs_baseline(self, cache, *params):
        """Mean over seeds of (accuracy - baseline accuracy from the same initial weights)."""
        return self._figure(cache, params, "accuracy_vs_baseline")

    track_accuracy_vs_baseline.unit = "fraction"

    def track_accuracy_vs_baseline_spread(self, cache, *params):
        """Standard deviation over seeds of that paired difference: the seed noise it is read against."""
        return self._figure(cache, params, "accuracy_vs_baseline_spread")

    track_accuracy_vs_baseline_spread.unit = "fraction"

    def track_fit_samples_per_s(self, cache, *params):
        """Samples/s of model.fit's train steps (median over the epochs after the first, and over seeds)."""
        return self._figure(cache, params, "fit_samples_per_s")

    track_fit_samples_per_s.unit = "samples/s"

    def track_starvation(self, cache, *params):
        """1 - fit samples/s with the generator / the ceiling: the same model fed one prepared batch over and
        over, measured in the same process (0: never starved, 1: always waiting for data)."""
        return self._figure(cache, params, "starvation")

    track_starvation.unit = "fraction"

    def track_starvation_vs_arrays(self, cache, *params):
        """1 - fit samples/s / fit(x, y) on the arrays in memory (negative: fit's array path is the slower)."""
        return self._figure(cache, params, "starvation_vs_arrays")

    track_starvation_vs_arrays.unit = "fraction"
