"""Throughput: one epoch timed by asv, and samples/s and time to first batch tracked."""

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
        reason = grid.skip_reason(impl, "copy", workers, multiprocessing)
        if reason:
            raise NotImplementedError(reason)
        # asv shows every benchmark's stderr: TensorFlow's start-up lines held back, as in feedbench's processes
        start_tensorflow_quietly()
        from feedbench.generators import build

        self.built = build(grid.spec(impl, "copy", workers, multiprocessing))

    def time_epoch(self, impl, workers, multiprocessing):
        from feedbench.fit import driver

        driver.run(self.built, epochs=1, timeout_s=grid.RUN_TIMEOUT_S, materialize=False)


class Throughput(grid.Measured):
    """Steady-state samples/s and time to first batch, median over epochs."""

    params = [grid.IMPLEMENTATIONS, grid.WORKLOADS, grid.WORKERS, grid.MULTIPROCESSING, grid.SIZES]
    param_names = ["implementation", "workload", "workers", "use_multiprocessing", "size"]
    group = "throughput"

    def setup_cache(self):
        return self.measure()

    setup_cache.timeout = grid.SWEEP_TIMEOUT_S

    def track_samples_per_s(self, cache, *params):
        return self.figure(cache, params, "samples_per_s")

    track_samples_per_s.unit = "samples/s"

    def track_first_batch_s(self, cache, *params):
        return self.figure(cache, params, "first_batch_s")

    track_first_batch_s.unit = "s"
