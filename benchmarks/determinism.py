"""Determinism of the delivered stream: one flag per check (0 is good), epoch diversity, the count of failed checks."""

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

    # One flag per check of the delivered stream, as `feedbench profile` judges it (Measured.problem).
    # The counts behind a failed check are profile's and the findings report's: where workers race,
    # their size is the race's, while whether the check fails repeats.

    def _problem(self, cache, params, check, judged_by=None):
        return self.problem(cache, params, check, judged_by or check)

    def track_problem_missing(self, cache, *params):
        """Samples of the epoch not delivered in it (and delivered in another epoch)."""
        return self._problem(cache, params, "missing")

    track_problem_missing.unit = "flag"

    def track_problem_duplicated(self, cache, *params):
        """Samples delivered twice or more in one epoch."""
        return self._problem(cache, params, "duplicated")

    track_problem_duplicated.unit = "flag"

    def track_problem_never_delivered(self, cache, *params):
        """Samples missing from every epoch of the run (a floor-length __len__ without shuffling)."""
        return self._problem(cache, params, "never_delivered")

    track_problem_never_delivered.unit = "flag"

    def track_problem_reproducible(self, cache, *params):
        """A second run with the same seed delivered other batches."""
        return self._problem(cache, params, "reproducible")

    track_problem_reproducible.unit = "flag"

    def track_problem_matches_serial(self, cache, *params):
        """The stream differs from the same generator's with 1 worker and threads."""
        return self._problem(cache, params, "matches_serial")

    track_problem_matches_serial.unit = "flag"

    def track_problem_repeated_draws(self, cache, *params):
        """Batches that received the identical random augmentation."""
        return self._problem(cache, params, "repeated_draws")

    track_problem_repeated_draws.unit = "flag"

    def track_problem_source_intact(self, cache, *params):
        """The generator wrote into its source arrays."""
        return self._problem(cache, params, "source_intact")

    track_problem_source_intact.unit = "flag"

    def track_problem_aliased_batches(self, cache, *params):
        """A batch delivered in a buffer an earlier batch still lived in, with other bytes: one
        preallocated array returned for every batch."""
        return self._problem(cache, params, "aliased_batches")

    track_problem_aliased_batches.unit = "flag"

    def track_problem_mismatched_inputs(self, cache, *params):
        """Inputs delivered under another sample's label (x is not the sample its traced id names)."""
        return self._problem(cache, params, "mismatched_inputs")

    track_problem_mismatched_inputs.unit = "flag"

    def track_problem_uneven_coverage(self, cache, *params):
        """fit(steps_per_epoch) below the length: samples seen unequally often over the run. n/a
        where epochs are whole (the grid's settings)."""
        return self._problem(cache, params, "uneven_coverage", judged_by="coverage_spread")

    track_problem_uneven_coverage.unit = "flag"

    def track_epoch_diversity(self, cache, *params):
        """Fraction of samples whose content changes between epochs (1 is good)."""
        return self.figure(cache, params, "epoch_diversity")

    track_epoch_diversity.unit = "fraction"

    def track_problem_epoch_diversity(self, cache, *params):
        """Random draws repeated from the last epoch beyond chance: frozen augmentation (a share of
        at least FROZEN_THRESHOLD, significant at z FROZEN_Z)."""
        return self._problem(cache, params, "epoch_diversity", judged_by="frozen_fraction")

    track_problem_epoch_diversity.unit = "flag"

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
