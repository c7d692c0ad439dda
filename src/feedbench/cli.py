"""``feedbench ...``: the command line, a thin face of the library.

    feedbench list                      the implementations, plug-ins included
    feedbench drive IMPL [options]      feed IMPL as fit would and report each epoch
    feedbench profile IMPL [options]    throughput, memory, determinism over a settings grid
    feedbench overhead                  what the harness adds to the cheapest generator's epoch
    feedbench findings                  measure the popular accuracy claims, write docs/FINDINGS.md
    feedbench fit IMPL [--model M:C]    train a model on IMPL: fit samples/s, starvation, accuracy
    feedbench shm-targets               shm against keyed, Keras's own pools and the peers, as ratios
    feedbench report [RESULTS_DIR]      one page from asv's results: verdicts, plots, changes
    feedbench init [GENERATOR ...]      an asv suite of your own pipeline, in your repository
    feedbench offline-html [HTML_DIR]   make an asv site work without internet
    feedbench docs [--check]            write the reference pages from the code

Bad input (options, a factory that raises, a dataset Keras's fit would refuse: a bad length,
batches that change shape, parts of different lengths, empty batches) ends with one line on
stderr and exit status 2; a run that fails (the generator raised, timed out, a worker died)
exits 1. ``--debug`` shows the traceback behind the line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace

from feedbench.core import settings
from feedbench.core.data import SIZES
from feedbench.core.workloads import WORKLOADS

BACKENDS = ("tensorflow", "jax", "torch")
MIN_SOAK = 7  # feedbench.measure.leaks.MIN_EPOCHS (not imported here: the parser starts without numpy)


def _quiet_tensorflow() -> None:
    # TensorFlow's start-up logging would bury the report; errors still surface as exceptions.
    from feedbench.core.quiet import start_tensorflow_quietly

    start_tensorflow_quietly()


def _seconds(minimum_exclusive: bool):
    """An argparse type: a finite number of seconds, above 0 (or at least 0)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > 0 if minimum_exclusive else value >= 0) or value == float("inf"):
            bound = "above 0" if minimum_exclusive else "0 or more"
            raise argparse.ArgumentTypeError(f"{text!r} given; expected a finite number of seconds, {bound}")
        return value

    return parse


def _count(minimum: int):
    """An argparse type: a whole number, at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} given; expected a whole number, {minimum} or more")
        return value

    return parse


def _add_plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="[NAME=]MODULE:CALLABLE",
        help="add your own generator factory(spec, source) to the registry (repeatable)",
    )


def _add_spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("impl", help="implementation name, or a plug-in as module:callable")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="image size of the source")
    parser.add_argument("--samples", type=int, default=512, help="source size (samples)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per batch")
    parser.add_argument("--workload", choices=WORKLOADS, default="copy", help="what each batch costs besides slicing")
    parser.add_argument("--workers", type=int, default=1, help="Keras's workers (a peer's own workers)")
    parser.add_argument("--multiprocessing", action="store_true", help="use_multiprocessing=True")
    parser.add_argument("--max-queue-size", type=int, default=10, help="Keras's max_queue_size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the source, shuffle and augmentation")
    parser.add_argument("--shuffle", action="store_true", help="shuffle every epoch")
    parser.add_argument(
        "--steps",
        type=int,
        help="batches per epoch, for a dataset without a length (an infinite PyDataset, a generator)",
    )
    parser.add_argument("--io-latency", type=_seconds(False), default=0.0, help="seconds per batch, io workload")
    parser.add_argument(
        "--python-iters", type=_count(1), default=2000, help="loop iterations per sample, python workload"
    )
    parser.add_argument(
        "--fit-shuffle",
        choices=["off", "on"],
        help="model.fit's shuffle= for a PyDataset (Keras's own default is on; default: what the implementation "
        "asks for)",
    )
    parser.add_argument("--timeout", type=_seconds(True), default=300.0, help="time limit of the run, seconds")
    parser.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND or tensorflow)")
    _add_plugin_option(parser)


EXAMPLES = {
    "list": "feedbench list --plugin mine=mypkg.feeds:my_dataset",
    "drive": "feedbench drive keyed --workers 2 --multiprocessing --epochs 3 --size large --samples 1024",
    "profile": "feedbench profile mypkg.feeds:my_dataset --grid-workers 1 2 --json profile.json --fail-on problems",
    "overhead": "feedbench overhead --repeats 15",
    "findings": "feedbench findings --from docs/findings.json",
    "shm-targets": "feedbench shm-targets --json shm.json",
    "fit": "feedbench fit mypkg.feeds:my_dataset --model mypkg.models:build --grid-workers 1 4 --device gpu",
    "offline-html": "feedbench offline-html .asv/html",
    "docs": "feedbench docs --check",
    "report": "feedbench report .asv/results --out .asv/html/report --link-from .asv/html",
    "init": "feedbench init mine=mypkg.feeds:my_dataset --grid-workers 1 2 --grid-multiprocessing both",
}


class _OneLineParser(argparse.ArgumentParser):
    """Bad options end in one line (what was given, what was expected) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from feedbench.core.version import __version__

    parser = _OneLineParser(
        prog="feedbench",
        description="How well does this data generator feed my model?",
        epilog="example: " + EXAMPLES["profile"] + "  (feedbench COMMAND --help for each command)",
    )
    parser.add_argument("--version", action="version", version=f"feedbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example: {EXAMPLES[name]}",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )

    listing = command("list", "list the implementations")
    _add_plugin_option(listing)
    _add_spec_options(command("drive", "feed an implementation as model.fit does"))
    prof = command("profile", "throughput, memory and determinism over a grid of settings")
    _add_spec_options(prof)
    prof.set_defaults(epochs=3, timeout=120.0)
    prof.add_argument("--grid-workers", type=int, nargs="+", default=[1, 2, 4], metavar="N", help="workers to try")
    prof.add_argument(
        "--grid-multiprocessing", choices=["off", "on", "both"], default="both", help="use_multiprocessing to try"
    )
    prof.add_argument("--json", metavar="FILE", help="write every figure to FILE (checked before measuring)")
    prof.add_argument(
        "--soak",
        type=_count(MIN_SOAK),
        metavar="EPOCHS",
        help=f"run the memory measure this many epochs (at least {MIN_SOAK}; 8 is certain to show a leak of one "
        "thread or descriptor every other epoch) for leak verdicts on memory, threads, open files and processes; "
        "without it, no leak verdicts",
    )
    prof.add_argument(
        "--own-data",
        action="store_true",
        help="the factory's targets carry no sample ids (its own data): checks that need ids are n/a",
    )
    prof.add_argument(
        "--fail-on",
        choices=["failures", "problems", "never"],
        default="failures",
        help="exit status 1 when a setting failed (failures), also when a verdict found a problem (problems), or never",
    )
    over = command("overhead", "what the harness adds to the cheapest generator's epoch")
    over.add_argument("--repeats", type=int, default=15, help="paired runs (the median is reported)")
    over.add_argument("--batches", type=int, default=1000, help="batches per epoch")
    over.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND or tensorflow)")
    find = command("findings", "measure the popular accuracy claims and write docs/FINDINGS.md")
    find.add_argument("--out", default="docs/FINDINGS.md", help="the Markdown report to write")
    find.add_argument("--json", default="docs/findings.json", help="where the measurements are stored")
    find.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="render stored measurements (a --json file) instead of measuring again",
    )
    fitting = command("fit", "train a model on the generator: fit samples/s, starvation, accuracy vs arrays")
    _add_spec_options(fitting)
    fitting.add_argument(
        "--model",
        metavar="MODULE:CALLABLE",
        help="your compiled Keras model (called with input_shape= and num_classes= if it takes them); "
        "default: a built-in one sized to the images",
    )
    fitting.add_argument("--seeds", type=int, default=2, help="seeds per setting (accuracy is paired per seed)")
    fitting.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the model trains")
    fitting.add_argument("--grid-workers", type=int, nargs="+", default=[1, 2], metavar="N", help="workers to try")
    fitting.add_argument(
        "--grid-multiprocessing", choices=["off", "on", "both"], default="both", help="use_multiprocessing to try"
    )
    fitting.add_argument("--json", metavar="FILE", help="write every figure to FILE (checked before measuring)")
    targets = command("shm-targets", "shm against keyed and Keras's own pools, as ratios")
    targets.add_argument("--epochs", type=int, default=3, help="epochs per run")
    targets.add_argument("--timeout", type=_seconds(True), default=120.0, help="time limit of each run, seconds")
    targets.add_argument(
        "--repeats", type=_count(1), default=3, help="rounds of every throughput setting (the median is reported)"
    )
    targets.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    report = command("report", "one page from asv's results: verdicts, throughput, memory, starvation, changes")
    report.add_argument("results_dir", nargs="?", default=".asv/results", help="asv's results folder")
    report.add_argument("--out", default=".asv/html/report", help="folder of the page (index.html)")
    report.add_argument(
        "--link-from",
        metavar="HTML_DIR",
        help="asv's published site: a link to the report is put at the top of its index page",
    )
    report.add_argument(
        "--agreement",
        action="store_true",
        help="instead of the page: how well each machine's last two runs agree, figure by figure "
        "(two runs of one commit: how far the figures repeat)",
    )
    report.add_argument(
        "--factor", type=float, default=1.1, help="with --agreement or --budgets: a figure moved past this ratio"
    )
    report.add_argument(
        "--releases",
        metavar="FILE.md",
        help="also write FILE.md: the Keras releases of a matrix over keras (asv.keras.conf.json) side by side",
    )
    report.add_argument(
        "--screenshot",
        metavar="FILE.png",
        help="also write a picture of the page, taken by headless Chromium (the README's picture)",
    )
    report.add_argument(
        "--log",
        metavar="ASV_LOG",
        help="also print a summary of that asv run's log: benchmarks ok / failed / n/a, each n/a reason once",
    )
    report.add_argument(
        "--budgets",
        metavar="FILE.md",
        help="also write FILE.md: how long each machine's newest run took, what it measured, and its agreement "
        "with the run before (docs/budgets.md)",
    )
    setup = command("init", "write an asv suite of your own generators into your git repository")
    setup.add_argument(
        "generators",
        nargs="*",
        metavar="[NAME=]MODULE:CALLABLE",
        help="your generator factories(spec, source) (default: the entry points of the group feedbench.generators)",
    )
    setup.add_argument("--dir", default=".", help="the top of your git repository")
    setup.add_argument(
        "--grid-workers", type=_count(1), nargs="+", default=[1, 2], metavar="N", help="workers to measure"
    )
    setup.add_argument(
        "--grid-multiprocessing", choices=["off", "on", "both"], default="both", help="use_multiprocessing to measure"
    )
    setup.add_argument("--samples", type=_count(1), default=1024, help="source size (samples) each factory is given")
    setup.add_argument("--batch-size", type=_count(1), default=64, help="samples per batch")
    setup.add_argument(
        "--own-data",
        action="store_true",
        help="the factories' targets carry no sample ids (their own data): checks that need ids are n/a",
    )
    setup.add_argument("--force", action="store_true", help="replace an asv.conf.json and suite files already there")
    offline = command("offline-html", "make an `asv publish` site work without internet")
    offline.add_argument("html_dir", nargs="?", default=".asv/html")
    pages = command("docs", "write docs/reference.md and docs/layout.md from the code (the parsers, the docstrings)")
    pages.add_argument("--out", default="docs", help="the folder to write them to")
    pages.add_argument("--check", action="store_true", help="write nothing; exit 1 where a page differs from the code")
    for command in commands.choices.values():
        command.add_argument("--debug", action="store_true", help="show the traceback behind a one-line error")
    return parser


def cmd_list(args) -> int:
    from feedbench.generators import registry

    table = registry(args.plugin)
    for impl in table.values():
        if impl.plugin:
            impl.load()  # a plug-in that does not import is an error now, not a listed name
    width = max(len(name) for name in table)
    family_width = max(len(impl.family or "(plug-in)") for impl in table.values())
    print(f"{'name':<{width}}  {'family':<{family_width}}  {'workloads':<22}  what it shows")
    for impl in table.values():
        family = impl.family or "(plug-in)"
        print(f"{impl.name:<{width}}  {family:<{family_width}}  {','.join(impl.workloads):<22}  {impl.shows}")
    return 0


def _spec_from(args):
    from feedbench.generators import Spec

    return Spec(
        args.impl,
        size=args.size,
        n_samples=args.samples,
        batch_size=args.batch_size,
        workload=args.workload,
        workers=args.workers,
        use_multiprocessing=args.multiprocessing,
        max_queue_size=args.max_queue_size,
        seed=args.seed,
        shuffle=args.shuffle,
        io_latency_s=args.io_latency,
        steps=args.steps,
        **_workload_options(args),
    )


def _workload_options(args) -> dict:
    """The Spec fields set by --python-iters and --fit-shuffle (None: the implementation's choice)."""
    fit_shuffle = None if args.fit_shuffle is None else args.fit_shuffle == "on"
    return {"python_iters": args.python_iters, "fit_shuffle": fit_shuffle}


def cmd_profile(args) -> int:
    import json

    from feedbench.generators import get
    from feedbench.measure.setting import SCHEMA_VERSION
    from feedbench.report import table
    from feedbench.run import profile
    from feedbench.run.provenance import provenance

    get(args.impl, args.plugin)  # an unknown name fails now, not once per setting
    spec = replace(_spec_from(args), traced=not args.own_data)
    if args.json:
        _check_writable(args.json)
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.grid_multiprocessing]
    grid = profile.settings_grid(tuple(args.grid_workers), modes)

    def progress(line):
        print(line, file=sys.stderr, flush=True)

    results = profile.profile(spec, grid, args.epochs, args.timeout, args.plugin, progress, soak=args.soak)
    print(table.render(spec, results))
    if args.json:
        base = {k: v for k, v in spec.to_dict().items() if k not in ("workers", "use_multiprocessing")}
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "schema_version": SCHEMA_VERSION,
                    "provenance": provenance(),
                    "spec": base,
                    "grid": [{"workers": w, "use_multiprocessing": mp} for w, mp in grid],
                    "epochs": args.epochs,
                    "soak": args.soak,
                    "settings": [r.to_json() for r in results],
                },
                handle,
                indent=2,
            )
        print(f"\nevery figure: {args.json}")
    failed = any(r.error for r in results)
    problems = any(r.problems for r in results)
    return int({"failures": failed, "problems": failed or problems, "never": False}[args.fail_on])


def _check_writable(path: str) -> None:
    """Fail before measuring, not after, when the results cannot be written."""
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise ValueError(f"--json {path!r} cannot be written ({exc.strerror}); expected a writable file path") from None
    if not existed:
        os.remove(path)


def _check_model_here(path: str, size: str) -> None:
    """Build the user's model once in this process, on the CPU (a GPU stays free for the training
    children: TensorFlow and jax take its memory on first use); jax is checked in the children."""
    from feedbench.core.data import NUM_CLASSES, SIZES
    from feedbench.fit.training import user_model
    from feedbench.generators.registry import load_callable

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "jax":
        load_callable(path)
        return
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    user_model(path, SIZES[size], NUM_CLASSES)


def cmd_fit(args) -> int:
    import json

    from feedbench.core.errors import PluginError
    from feedbench.fit.training import DEVICES, Task, device_env, gpu_present
    from feedbench.generators import get
    from feedbench.measure.setting import SCHEMA_VERSION
    from feedbench.report import fit as fit_report
    from feedbench.run import profile, sweep
    from feedbench.run.provenance import provenance

    get(args.impl, args.plugin)
    if args.model:  # a model that does not import, raises or is not compiled fails now, in one line
        _check_model_here(args.model, args.size)
    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds} given; expected 1 or more")
    if args.epochs < 2:
        raise ValueError(f"--epochs {args.epochs} given; expected 2 or more (the first epoch builds the step)")
    if args.device == "gpu" and not gpu_present():
        raise PluginError("--device gpu given, but nvidia-smi lists no GPU here; expected a machine with one")
    assert args.device in DEVICES
    if args.json:
        _check_writable(args.json)
    task = Task(args.size, args.samples, batch_size=args.batch_size, epochs=args.epochs, model=args.model)
    base = task.spec(
        args.impl,
        seed=args.seed,
        workload=args.workload,
        max_queue_size=args.max_queue_size,
        io_latency_s=args.io_latency,
        steps=args.steps,
        **_workload_options(args),
    )
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.grid_multiprocessing]
    grid = profile.settings_grid(tuple(args.grid_workers), modes)
    specs = [replace(base, workers=w, use_multiprocessing=mp) for w, mp in grid]
    print(
        f"training on {len(specs)} settings x {args.seeds} seeds (each with its arrays baseline and ceiling), "
        f"each fit under a limit of {args.timeout:g} s ...",
        file=sys.stderr,
        flush=True,
    )

    def progress(index, result):
        state = "skipped" if result.skipped else ("FAILED: " + result.error if result.error else "done")
        print(
            f"[{index + 1}/{len(specs)}] workers={specs[index].workers} "
            f"use_multiprocessing={specs[index].use_multiprocessing} {state}",
            file=sys.stderr,
            flush=True,
        )

    results = sweep.sweep(
        specs,
        ("training",),
        args.epochs,
        args.timeout,
        args.plugin,
        progress,
        seeds=args.seeds,
        env=device_env(args.device),
        model=args.model,
    )
    print(fit_report.render(base, results, args.model, args.device))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "schema_version": SCHEMA_VERSION,
                    "provenance": provenance(),
                    "spec": base.to_dict(),
                    "model": args.model,
                    "device": args.device,
                    "seeds": args.seeds,
                    "settings": [r.to_json() for r in results],
                },
                handle,
                indent=2,
            )
        print(f"\nevery figure: {args.json}")
    return int(any(r.error for r in results))


def cmd_overhead(args) -> int:
    import platform
    from datetime import datetime, timezone

    from feedbench.measure.overhead import measure_overhead

    result = measure_overhead(args.repeats, args.batches)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"harness overhead on a preallocated-batch PyDataset ({result.batches_per_epoch} batches of "
        f"{result.batch_size}, Keras backend {result.backend}, {platform.node()}, {stamp})"
    )
    print(f"  bare Keras epoch, median of {result.repeats} runs: {result.bare_epoch_s * 1e3:.1f} ms")
    print(f"  through feedbench's measurement:     {result.harness_epoch_s * 1e3:.1f} ms")
    print(
        f"  overhead: {result.overhead_fraction * 100:+.2f} % median of paired runs "
        f"(quartiles {result.overhead_p25 * 100:+.2f} % to {result.overhead_p75 * 100:+.2f} %)"
    )
    print(
        f"  the harness's own code, timed alone: {result.harness_per_batch_s * 1e6:.1f} us per batch = "
        f"{result.harness_fraction * 100:.2f} % of the bare Keras time per batch (target: below 2 %)"
    )
    return 0


def cmd_findings(args) -> int:
    from feedbench.report import findings
    from feedbench.run import findings as findings_run

    if args.source:
        results = findings.read(args.source)
        findings.write(results, args.out, None)
    else:
        results = findings_run.measure(lambda line: print(line, file=sys.stderr, flush=True))
        findings.write(results, args.out, args.json)
    print(f"{args.out}: findings measured on {results.machine}, {results.when}")
    return 0


def cmd_shm_targets(args) -> int:
    import json

    from feedbench.report import shm_targets
    from feedbench.run import shm_targets as shm_targets_run

    result = shm_targets_run.measure(
        args.epochs, args.timeout, lambda line: print(line, file=sys.stderr, flush=True), args.repeats
    )
    print(shm_targets.render(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0 if all(result["passed"].values()) else 1


def cmd_report(args) -> int:
    from feedbench.report import run_log, site

    if args.agreement:
        return _report_agreement(site, args)
    if args.log:
        try:
            with open(args.log, encoding="utf-8", errors="replace") as handle:
                summary = run_log.summarize(handle.read())
        except OSError as exc:
            print(
                f"feedbench: --log {args.log!r} cannot be read ({exc.strerror}); expected asv run's output",
                file=sys.stderr,
            )
            return 2
        print("\n".join(run_log.lines(summary, args.log)))
    asv_site = None
    if args.link_from:
        asv_site = os.path.relpath(os.path.join(args.link_from, "index.html"), args.out)
    try:
        path = site.write(args.results_dir, args.out, asv_site)
    except FileNotFoundError as exc:
        print(f"feedbench: {exc}", file=sys.stderr)
        return 2
    if args.link_from:
        href = os.path.relpath(path, args.link_from)
        if not site.link_from_asv_site(args.link_from, href):
            print(f"feedbench: no asv site in {args.link_from!r} to link from (run asv publish first)", file=sys.stderr)
    print(f"feedbench: report written to {path}")
    if args.screenshot:
        try:
            print(f"feedbench: a picture of the page in {site.screenshot(path, args.screenshot)}")
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"feedbench: {exc}", file=sys.stderr)
            return 2
    if args.releases:
        from feedbench.report import releases

        command = f"feedbench report {args.results_dir} --releases {args.releases}"
        try:
            text = releases.render(site.load(args.results_dir), command)
        except FileNotFoundError as exc:
            print(f"feedbench: {exc}", file=sys.stderr)
            return 2
        with open(args.releases, "w") as handle:
            handle.write(text)
        print(f"feedbench: Keras releases side by side in {args.releases}")
    if args.budgets:
        from feedbench.report import budgets

        with open(args.budgets, "w") as handle:
            handle.write(budgets.page(args.results_dir, args.factor))
        print(f"feedbench: run times and agreement in {args.budgets}")
    return 0


def _report_agreement(site, args) -> int:
    try:
        groups = site.load(args.results_dir)
        found = [site.agreement(runs[-2], runs[-1], args.factor) for runs in groups.values() if len(runs) > 1]
    except (FileNotFoundError, ValueError) as exc:
        print(f"feedbench: {exc}", file=sys.stderr)
        return 2
    if not found:
        print(f"feedbench: {args.results_dir!r} holds one run per machine; --agreement needs two", file=sys.stderr)
        return 2
    for one in found:
        print("\n".join(site.agreement_lines(one)))
    return 0


def cmd_init(args) -> int:
    from feedbench.suite import init

    if args.batch_size > args.samples:
        raise ValueError(f"--batch-size {args.batch_size} given; expected at most --samples ({args.samples})")
    choices = init.Choices(
        generators=tuple(args.generators),
        workers=tuple(args.grid_workers),
        multiprocessing={"off": (False,), "on": (True,), "both": (False, True)}[args.grid_multiprocessing],
        samples=args.samples,
        batch_size=args.batch_size,
        traced=not args.own_data,
    )
    written = init.init(args.dir, choices, force=args.force)
    root = written[0].parent
    print(f"feedbench: wrote {', '.join(str(path.relative_to(root)) for path in written)} in {root}")
    print("next, in that folder:")
    for step in init.next_steps():
        print(f"  {step}")
    return 0


def cmd_offline_html(args) -> int:
    from feedbench.report.offline_html import make_offline

    try:
        replaced = make_offline(args.html_dir)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"feedbench: {exc}", file=sys.stderr)
        return 2
    print(f"{args.html_dir}: {len(replaced)} external scripts and styles now served locally")
    return 0


def cmd_docs(args) -> int:
    from pathlib import Path

    from feedbench.report import reference

    out = Path(args.out)
    if not out.is_dir():
        print(f"feedbench: --out {args.out!r} is not a folder; expected the docs/ folder to write to", file=sys.stderr)
        return 2
    pages = reference.pages(_parser(), Path(__file__).parent)
    differ = [name for name, text in pages.items() if not (out / name).exists() or (out / name).read_text() != text]
    if args.check:
        if differ:
            print(f"feedbench: {', '.join(differ)} in {out} differ from the code; run feedbench docs", file=sys.stderr)
            return 1
        print(f"feedbench: the {len(pages)} pages in {out} match the code")
        return 0
    for name in differ:
        (out / name).write_text(pages[name], encoding="utf-8")
    print(f"feedbench: {len(differ)} of {len(pages)} pages in {out} written")
    return 0


def cmd_drive(args) -> int:
    import time
    from collections import Counter

    from feedbench.fit import driver
    from feedbench.generators import build

    spec = _spec_from(args)
    built = build(spec, args.plugin)
    print(
        f"{spec.impl} ({built.family}) on Keras backend {driver.backend()}: {spec.n_samples} samples "
        f"of {args.size}, batch {spec.batch_size}, workload {spec.workload}, workers={spec.workers}, "
        f"use_multiprocessing={spec.use_multiprocessing}, max_queue_size={spec.max_queue_size}"
    )
    for setting, reason in built.not_applicable.items():
        print(f"  note: {setting} does not apply: {reason}")
    batches, samples, first, last = Counter(), Counter(), {}, {}
    start = time.perf_counter()
    for batch in driver.drive(built, epochs=args.epochs, timeout_s=args.timeout, materialize=False):
        batches[batch.epoch] += 1
        samples[batch.epoch] += batch.rows
        first.setdefault(batch.epoch, batch.t)
        last[batch.epoch] = batch.t
    print(f"{'epoch':>5} {'batches':>8} {'samples':>8} {'seconds':>8} {'samples/s':>10}")
    previous = start
    for epoch in sorted(batches):
        seconds = last[epoch] - previous
        print(f"{epoch:>5} {batches[epoch]:>8} {samples[epoch]:>8} {seconds:>8.3f} {samples[epoch] / seconds:>10.0f}")
        previous = last[epoch]
    return 0


def _debug(args) -> None:
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exc()


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so every clean-up path runs as for Ctrl-C."""

    def __init__(self, signum: int):
        self.signal = signal.Signals(signum)
        super().__init__(self.signal.name)


def _ending(signum: int) -> tuple[str, int]:
    """How a stop signal ends the command: its one line and exit status."""
    signum = signal.Signals(signum)
    if signum == signal.SIGINT:
        return "feedbench: interrupted; the run's workers were stopped", 130
    return f"feedbench: stopped by {signum.name}; the run's workers were stopped", 128 + signum.value


def _say_ending(signum: int) -> int:
    from feedbench.core import stop_guard

    line, status = _ending(signum)
    if stop_guard.claim_last_word():
        print(line, file=sys.stderr)
    return status


def _stdout_reader_gone() -> bool:
    """Whether our standard output is a pipe whose reader has gone (``feedbench report | head -1``)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _quiet_stdout() -> int:
    """End as a Unix tool does when its reader goes away: no traceback, status 128 + SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere instead of failing again
    return 128 + signal.SIGPIPE


def _on_terminate(signum, frame):
    raise _Terminated(signum)


def _redeliver_swallowed_stops(unraisable) -> None:
    """``sys.unraisablehook``: a stop (Ctrl-C, SIGTERM, SIGHUP) whose exception landed in a
    destructor is swallowed there (Python only prints it; TensorFlow's ``Executor.__del__`` runs
    between epochs, and ``drive shm`` once ran on after SIGTERM for that). Send the signal to the
    main thread again shortly, once that destructor has returned."""
    exc = unraisable.exc_value
    if isinstance(exc, KeyboardInterrupt):
        signum = signal.SIGINT
    elif isinstance(exc, _Terminated):
        signum = exc.signal
    else:
        sys.__unraisablehook__(unraisable)
        return
    import threading

    main_thread = threading.main_thread().ident
    threading.Timer(0.1, signal.pthread_kill, (main_thread, signum)).start()


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (never ends the process: tests call it)."""
    args = _parser().parse_args(argv)
    try:
        options = settings.current()  # read once, here (unless a caller applied its own); modules ask current()
    except ValueError as exc:
        print(f"feedbench: {exc}", file=sys.stderr)
        return 2
    with settings.applied(options):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "backend", None):
        os.environ["KERAS_BACKEND"] = args.backend
    if args.command not in ("report", "offline-html", "docs"):  # the others load Keras, hence TensorFlow
        _quiet_tensorflow()
    from feedbench.core.errors import BadDataset, DriveTimeout, FeedbenchError, GeneratorFailed

    handlers = {
        "list": cmd_list,
        "drive": cmd_drive,
        "profile": cmd_profile,
        "fit": cmd_fit,
        "overhead": cmd_overhead,
        "offline-html": cmd_offline_html,
        "report": cmd_report,
        "findings": cmd_findings,
        "shm-targets": cmd_shm_targets,
        "init": cmd_init,
        "docs": cmd_docs,
    }
    try:
        return handlers[args.command](args)
    except (GeneratorFailed, DriveTimeout) as exc:
        _debug(args)
        print(f"feedbench: run failed: {exc}", file=sys.stderr)
        return 1
    except BadDataset as exc:  # the dataset itself is bad input, found before or during the run
        _debug(args)
        print(f"feedbench: bad dataset: {exc}", file=sys.stderr)
        return 2
    except (FeedbenchError, ValueError) as exc:
        _debug(args)
        print(f"feedbench: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # Keras itself failing to load its backend
        backend = os.environ.get("KERAS_BACKEND", "tensorflow")
        print(
            f"feedbench: {exc}; Keras backend {backend!r} needs its package installed "
            f"(pip install -e '.[{backend}]' for jax or torch)",
            file=sys.stderr,
        )
        return 2


def entry() -> None:
    """The ``feedbench`` command: ``main`` in a process that is ours to end.

    Ctrl-C, SIGTERM and SIGHUP stop the run through its clean-up paths (workers, children and
    their process groups, temporary folders) and end with one line. The process then ends at
    once: TensorFlow's iterator destructors at interpreter shutdown can wait forever on a
    producer thread, and a data path stuck in native code cannot be joined.
    """
    from feedbench.core import procs, scratch, stop_guard
    from feedbench.core.errors import show_warnings_as_lines

    scratch.use_private_folder()  # what the code under test leaves in TMPDIR goes with this call
    procs.own_interpreter()  # a data path stuck in native code past its limit ends this process (124)
    show_warnings_as_lines()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_terminate)
    sys.unraisablehook = _redeliver_swallowed_stops
    stop_guard.install(_ending)  # ends the process even if the main thread cannot take the signal
    try:
        status = main()
    except KeyboardInterrupt:
        status = _say_ending(signal.SIGINT)
    except _Terminated as exc:
        status = _say_ending(exc.signal)
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # a pipe of the run itself: an error, shown as one
        status = _quiet_stdout()
    finally:  # --help and argparse's own exits leave through here too
        scratch.remove_private_folders()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    entry()
