"""Throughput: one epoch timed by asv, and samples/s tracked (absolute, and against a reference setting)."""

import os

from feedbench.core.quiet import start_tensorflow_quietly

from . import _grid as grid


class EpochTime:
    """Wall time of one epoch as fit runs it (the copy workload, small source)."""

    params = [grid.IMPLEMENTATIONS, grid.WORKERS, grid.MULTIPROCESSING]
    param_names = ["implementation", "workers", "use_multiprocessing"]
    number = 1
    repeat = (1, 5, 20.0)
    rounds = 1
    warmup_time = 0
    timeout = 300

    def setup(self, impl, workers, multiprocessing):
        reason = grid.epoch_time_skip_reason(impl, workers, multiprocessing)
        if reason:
            raise NotImplementedError(reason)
        # As in the sweeps: Keras workers deadlocked in a fork fail the epoch in seconds, not at its limit
        # (read when feedbench.fit.supervise is first imported, which is below, in this process)
        os.environ.update(grid.MEASURING_ENV)
        # asv shows every benchmark's stderr: TensorFlow's start-up lines held back, as in feedbench's processes
        start_tensorflow_quietly()
        from feedbench.generators import build

        self.built = build(grid.spec(impl, "copy", workers, multiprocessing))

    def time_epoch(self, impl, workers, multiprocessing):
        from feedbench.fit import driver

        driver.run(self.built, epochs=1, timeout_s=grid.RUN_TIMEOUT_S, materialize=False)


class Throughput(grid.Measured):
    """Samples/s over whole epochs (first batch and Keras's per-epoch pool start-up included, as fit
    gets them): the median over the epochs after the first, run until they cover a second
    (feedbench.measure.throughput.MIN_MEASURED_S); and the same as a ratio to the reference setting.
    Both hand asv the measured epochs' own rates as samples: asv records their median (the figure)
    with its statistics, and compares two runs as it compares timings (a change within the epochs'
    spread is not called one).

    The steady-state rate (after the first batch) and the time to first batch are not tracked: with
    epochs of 16 batches they swing with how many batches were queued, and did not repeat to 10 %
    between two runs of one commit. profile shows them.
    """

    params = [grid.IMPLEMENTATIONS, grid.WORKLOADS, grid.WORKERS, grid.MULTIPROCESSING, grid.SIZES]
    param_names = ["implementation", "workload", "workers", "use_multiprocessing", "size"]
    group = "throughput"

    def setup_cache(self):
        # the reference of every workload and source is measured even where the grid leaves it out,
        # and REFERENCE_ROUNDS times over the run (the median): once, its noise moved every ratio
        references = [grid.reference_params(p) for p in grid.applicable(self.params)]
        return self.measure(extra=references, extra_rounds=grid.REFERENCE_ROUNDS)

    setup_cache.timeout = grid.SWEEP_TIMEOUT_S

    def track_epoch_samples_per_s(self, cache, *params):
        return grid.with_statistics(
            cache, self._grid_params(params), self.group, "epoch_samples_per_s", "measured_epochs_samples_per_s"
        )

    track_epoch_samples_per_s.unit = "samples/s"

    def track_epoch_samples_per_s_vs_reference(self, cache, *params):
        """The same over that of keyed, 1 worker, threads, same workload and source, same run (1: as fast)."""
        grid_params = self._grid_params(params)
        return grid.with_statistics(
            cache,
            grid_params,
            self.group,
            "epoch_samples_per_s",
            "measured_epochs_samples_per_s",
            over=grid.reference_params(grid_params),
        )

    track_epoch_samples_per_s_vs_reference.unit = "ratio"
