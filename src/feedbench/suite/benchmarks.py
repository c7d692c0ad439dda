"""The asv benchmark classes of a suite, built from its ``Grid``.

feedbench's own ``benchmarks/`` and the ``benchmarks/`` that ``feedbench init`` writes into a user's
repository both build their classes here, so both have the same asv keys
(``throughput.Throughput.track_epoch_samples_per_s``, ``memory.TreeMemory.track_added_tree_pss``,
``determinism.Stream.track_problem_duplicated``, ...) and the same statistics: a benchmark module
binds the classes to the names asv reports (``EpochTime, Throughput = throughput(GRID)``). asv keys
a ``setup_cache`` by the line it is written on, so each class defines its own.
"""

from __future__ import annotations

import os

from feedbench.core.quiet import start_tensorflow_quietly
from feedbench.suite.grid import MEASURING_ENV, SWEEP_TIMEOUT_S, Grid, Measured, use_private_scratch, with_statistics


def throughput(chosen: Grid) -> tuple[type, type]:
    """``EpochTime`` (one epoch timed by asv) and ``Throughput`` (samples/s, absolute and against the
    grid's reference setting)."""
    use_private_scratch()

    class EpochTime:
        """Wall time of one epoch as fit runs it (the copy workload, small source)."""

        params = [list(chosen.implementations), list(chosen.workers), list(chosen.multiprocessing)]
        param_names = ["implementation", "workers", "use_multiprocessing"]
        number = 1
        repeat = (1, 5, 20.0)
        rounds = 1
        warmup_time = 0
        timeout = 300

        def setup(self, impl, workers, multiprocessing):
            reason = chosen.epoch_time_skip_reason(impl, workers, multiprocessing)
            if reason:
                raise NotImplementedError(reason)
            # As in the sweeps: Keras workers deadlocked in a fork fail the epoch in seconds, not at its limit
            # (read when feedbench.fit.supervise is first imported, which is below, in this process)
            os.environ.update(MEASURING_ENV)
            # asv shows every benchmark's stderr: TensorFlow's start-up lines held back, as in feedbench's processes
            start_tensorflow_quietly()
            from feedbench.generators import build

            self.built = build(chosen.spec(impl, "copy", workers, multiprocessing), chosen.plugins)

        def time_epoch(self, impl, workers, multiprocessing):
            from feedbench.fit import driver

            driver.run(self.built, epochs=1, timeout_s=chosen.run_timeout_s, materialize=False)

    class Throughput(Measured):
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

        params = [
            list(chosen.implementations),
            list(chosen.workloads),
            list(chosen.workers),
            list(chosen.multiprocessing),
            list(chosen.sizes),
        ]
        param_names = ["implementation", "workload", "workers", "use_multiprocessing", "size"]
        group = "throughput"
        grid = chosen

        def setup_cache(self):
            # the reference of every workload and source is measured even where the grid leaves it out,
            # and REFERENCE_ROUNDS times over the run (the median): once, its noise moved every ratio
            references = [chosen.reference_params(p) for p in chosen.applicable(self.params)]
            return self.measure(extra=references, extra_rounds=chosen.reference_rounds)

        setup_cache.timeout = SWEEP_TIMEOUT_S

        def track_epoch_samples_per_s(self, cache, *params):
            return with_statistics(
                cache, self._grid_params(params), self.group, "epoch_samples_per_s", "measured_epochs_samples_per_s"
            )

        track_epoch_samples_per_s.unit = "samples/s"

        def track_epoch_samples_per_s_vs_reference(self, cache, *params):
            """The same over that of keyed, 1 worker, threads, same workload and source, same run (1: as fast)."""
            grid_params = self._grid_params(params)
            return with_statistics(
                cache,
                grid_params,
                self.group,
                "epoch_samples_per_s",
                "measured_epochs_samples_per_s",
                over=chosen.reference_params(grid_params),
            )

        track_epoch_samples_per_s_vs_reference.unit = "ratio"

    return EpochTime, Throughput


def memory(chosen: Grid) -> type:
    """``TreeMemory``: what feeding adds to the process tree's memory, and one flag per leak verdict."""
    use_private_scratch()

    class TreeMemory(Measured):
        """What feeding adds to the tree's memory (each epoch's peak PSS above the tree before the run,
        the median over the epochs), and the workers seen. The totals (peak USS, PSS, RSS of the tree and
        of the main process) are not tracked: they are mostly TensorFlow's own import, which moves with
        nothing changed (feedbench.measure.memory); profile shows them. Leaks are tracked as flags, one
        per resource, over the grid's memory_epochs."""

        params = [
            list(chosen.implementations),
            list(chosen.workers),
            list(chosen.multiprocessing),
            list(chosen.sizes),
        ]
        param_names = ["implementation", "workers", "use_multiprocessing", "size"]
        group = "memory"
        grid = chosen
        # Memory depends on batches and workers, not on the per-batch cost.
        fixed = {"workload": "copy"}
        epochs = chosen.memory_epochs

        def setup_cache(self):
            return self.measure()

        setup_cache.timeout = SWEEP_TIMEOUT_S

        def track_added_tree_pss(self, cache, *params):
            """Peak PSS of the tree in an epoch above the tree's PSS before the run, the median over the
            epochs: what feeding adds. The largest of all epochs is one extreme (a forked worker copying
            its parent's pages in one epoch); `feedbench profile --json` has it (peak_tree_pss_added_bytes)."""
            return self.figure(cache, params, "epoch_peak_pss_added_bytes")

        track_added_tree_pss.unit = "bytes"

        def track_workers_seen(self, cache, *params):
            return self.figure(cache, params, "workers_seen")

        track_workers_seen.unit = "count"

        # One flag per leak verdict (feedbench.measure.leaks, NOTE [ Leak verdicts ]): 1 where the resource
        # grows every epoch as `feedbench profile --soak` judges it, 0 where it does not, n/a without a soak.

        def track_problem_leaked_memory(self, cache, *params):
            """Memory of the main process, or of each worker process, grows every epoch."""
            return self.problem(cache, params, "leaked_memory", "growth_memory_main_bytes")

        track_problem_leaked_memory.unit = "flag"

        def track_problem_leaked_threads(self, cache, *params):
            """Threads pile up: more alive after every epoch."""
            return self.problem(cache, params, "leaked_threads", "growth_threads_main")

        track_problem_leaked_threads.unit = "flag"

        def track_problem_leaked_files(self, cache, *params):
            """Open file descriptors pile up over epochs."""
            return self.problem(cache, params, "leaked_files", "growth_files_main")

        track_problem_leaked_files.unit = "flag"

        def track_problem_leaked_processes(self, cache, *params):
            """Processes the generator started are still running after every epoch, more each epoch."""
            return self.problem(cache, params, "leaked_processes", "growth_processes")

        track_problem_leaked_processes.unit = "flag"

    return TreeMemory


def determinism(chosen: Grid) -> type:
    """``Stream``: one flag per determinism check of the delivered stream, and the count of failed ones."""
    use_private_scratch()

    class Stream(Measured):
        params = [list(chosen.implementations), list(chosen.workers), list(chosen.multiprocessing)]
        param_names = ["implementation", "workers", "use_multiprocessing"]
        group = "determinism"
        grid = chosen
        # Workloads are deterministic by construction, so the copy workload on the
        # small source speaks for all of them.
        fixed = {"workload": "copy", "size": "small"}

        def setup_cache(self):
            return self.measure()

        setup_cache.timeout = SWEEP_TIMEOUT_S

        # One flag per stream check, judged as `feedbench profile` judges it (Measured.problem): where
        # workers race, whether a check fails repeats across runs; the counts behind it do not.

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

        def track_problem_in_order(self, cache, *params):
            """An unshuffled run that did not deliver samples in index order (n/a where the run is
            shuffled; informational where the dataset shuffles itself)."""
            return self._problem(cache, params, "in_order")

        track_problem_in_order.unit = "flag"

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

    return Stream
