"""Determinism of the delivered stream: counts and fractions (0 is good unless said)."""

from . import _grid as grid


class Stream(grid.Measured):
    params = [grid.IMPLEMENTATIONS, grid.WORKERS, grid.MULTIPROCESSING]
    param_names = ["implementation", "workers", "use_multiprocessing"]
    group = "determinism"
    # Workloads are deterministic by construction, so the copy workload on the
    # small source speaks for all of them.
    fixed = {"workload": "copy", "size": "small"}

    def setup_cache(self):
        return self.measure()

    setup_cache.timeout = grid.SWEEP_TIMEOUT_S

    def track_missing(self, cache, *params):
        return self.figure(cache, params, "missing")

    track_missing.unit = "count"

    def track_duplicated(self, cache, *params):
        return self.figure(cache, params, "duplicated")

    track_duplicated.unit = "count"

    def track_batches_differing_from_repeat(self, cache, *params):
        return self.figure(cache, params, "batches_differing_repeat")

    track_batches_differing_from_repeat.unit = "count"

    def track_batches_differing_from_serial(self, cache, *params):
        return self.figure(cache, params, "batches_differing_serial")

    track_batches_differing_from_serial.unit = "count"

    def track_epoch_diversity(self, cache, *params):
        """Fraction of samples whose content changes between epochs (1 is good)."""
        return self.figure(cache, params, "epoch_diversity")

    track_epoch_diversity.unit = "fraction"

    def track_repeated_draws(self, cache, *params):
        return self.figure(cache, params, "repeated_draws")

    track_repeated_draws.unit = "count"

    def track_source_rows_changed(self, cache, *params):
        return self.figure(cache, params, "source_rows_changed")

    track_source_rows_changed.unit = "count"

    def track_never_delivered(self, cache, *params):
        """Samples missing from every epoch of the run (a floor-length __len__ without shuffling)."""
        return self.figure(cache, params, "never_delivered")

    track_never_delivered.unit = "count"

    def track_frozen_fraction(self, cache, *params):
        """Share of random draws repeated from the last epoch beyond chance (0 is good; n/a without
        augmentation); 0 where the excess is within chance (z below FROZEN_Z, as profile's verdict
        asks): its size is then sampling noise, which moved 0 -> 0.03 between two runs of one commit."""
        from feedbench.measure.determinism import FROZEN_Z

        fraction = self.figure(cache, params, "frozen_fraction")
        z = self.figure(cache, params, "frozen_z")
        return 0.0 if fraction == fraction and z == z and z < FROZEN_Z else fraction

    track_frozen_fraction.unit = "fraction"

    def track_forked_tensorflow(self, cache, *params):
        """1 where the generator ran TensorFlow in forked workers after the measuring process had
        started it (such workers deadlock or crash at random), else 0: the same in every run."""
        if cache[self._grid_params(params)].forked_tensorflow:  # said even where every try failed for it
            return 1.0
        return float("forked_tensorflow" in self.result(cache, params).problems)

    track_forked_tensorflow.unit = "flag"

    def track_problems(self, cache, *params):
        """How many checks failed for the setting, as `feedbench profile` counts them (0 is good): the
        verdict the report page colours its matrix by; n/a where TensorFlow ran in forked workers,
        whose other checks came and went between runs (the flag above says it)."""
        result = self.result(cache, params)
        return float(len(result.problems))

    track_problems.unit = "count"
