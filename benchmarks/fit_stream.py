"""What a real model.fit delivers (feedbench.fit.tap), shuffled: the reference for the driver.

A tap model records the sample ids each train step receives. A backend that
drops or repeats samples (jax and torch shift a Keras worker pool's stream by
the batch they build the model on) or calls the dataset's hooks differently
shows here; run the suite with KERAS_BACKEND=jax or torch to compare.
"""

from . import _grid


class FitStream(_grid.Measured):
    grid = _grid.GRID
    params = [_grid.IMPLEMENTATIONS, _grid.WORKERS, _grid.MULTIPROCESSING]
    param_names = ["implementation", "workers", "use_multiprocessing"]
    group = "fit_stream"
    fixed = {"workload": "copy", "size": "small"}
    shuffle = True

    def setup_cache(self):
        return self.measure()

    setup_cache.timeout = _grid.SWEEP_TIMEOUT_S

    def track_missing(self, cache, *params):
        """Samples a real fit never delivered in its worst epoch (0 is right)."""
        return self.figure(cache, params, "missing")

    track_missing.unit = "count"

    def track_duplicated(self, cache, *params):
        """Samples a real fit delivered more than once in its worst epoch (0 is right)."""
        return self.figure(cache, params, "duplicated")

    track_duplicated.unit = "count"

    def track_on_epoch_begin_calls(self, cache, *params):
        return self.figure(cache, params, "on_epoch_begin_calls")

    track_on_epoch_begin_calls.unit = "count"

    def track_on_epoch_end_calls(self, cache, *params):
        return self.figure(cache, params, "on_epoch_end_calls")

    track_on_epoch_end_calls.unit = "count"
