"""The training task: does a generator cost accuracy, and does it starve ``fit``?

The task is feedbench's synthetic source with its label band dimmed
(``Task.band_brightness``), so a small conv net reaches clearly-above-chance
accuracy in a few epochs on two CPU cores without saturating: a generator
that loses samples or augments badly has room to show it. Flips and the
brightness jitter of the keyed implementations keep every label true.

For each seed, the model starts from the same weights (``keras.utils.
set_random_seed(seed)``) whether it is fed by the implementation or by the
baseline, ``model.fit(x, y)`` on the same training arrays in memory; so the
per-seed accuracy differences are paired, and their spread over seeds says
whether a difference is more than seed noise.

Fit throughput is the training samples per second of ``fit`` itself (the
train steps of each epoch after the first, validation excluded; the pool
start-up Keras repeats each epoch with multiprocessing included).

Starvation = 1 - fit samples/s with the generator / the *ceiling*: the same
model fed one prepared batch over and over (a PyDataset that returns a cached
batch: a host-side pipeline with no work), measured right after each fit on the
model that fit just trained (no second build and compile per seed). It
is in [0, 1] up to noise. ``fit(x, y)`` on in-memory arrays is not that
ceiling (fit's array path gathers and converts, and is itself input-bound on
large batches), so starvation against it is kept apart as
``starvation_vs_arrays``, and can be negative.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from feedbench.core import settings
from feedbench.core.data import make_source
from feedbench.core.records import Record
from feedbench.core.spec import Built, Spec
from feedbench.fit.keras_api import backend
from feedbench.fit.supervise import supervised
from feedbench.generators import build

DEVICES = ("cpu", "gpu")
DEVICE_ENV = "FEEDBENCH_DEVICE"  # the device a measuring process must train on
VALIDATION_SEED = 10_000  # one held-out set for every seed and implementation
# A paired accuracy difference counts as real beyond this many standard errors.
NOISE_SE = 2.0
ONE_SEED = "one seed: no noise estimate (2 or more seeds tell a difference from seed noise)"


@dataclass(frozen=True)
class Task:
    size: str = "small"
    n_train: int = 1024
    n_val: int = 512
    batch_size: int = 32
    epochs: int = 5
    band_brightness: float = 0.15
    learning_rate: float = 1e-3
    model: str | None = None  # "module:callable" returning the user's compiled model; None: built-in

    def __post_init__(self):
        if self.epochs < 2:
            raise ValueError(f"epochs={self.epochs} given; expected 2 or more (the first epoch is warm-up)")

    @classmethod
    def of(cls, spec: Spec, epochs: int, model: str | None = None) -> Task:
        """The task a training spec belongs to."""
        return cls(
            spec.size,
            spec.n_samples,
            batch_size=spec.batch_size,
            epochs=epochs,
            band_brightness=spec.band_brightness,
            model=model,
        )

    def spec(self, impl: str, seed: int = 0, **settings) -> Spec:
        """A spec that feeds this task: shuffled, plain labels, the task's source."""
        return Spec(
            impl,
            size=self.size,
            n_samples=self.n_train,
            batch_size=self.batch_size,
            seed=seed,
            shuffle=True,
            traced=False,
            band_brightness=self.band_brightness,
            **settings,
        )

    def training_arrays(self, seed: int):
        source = make_source(self.size, self.n_train, seed, traced=False, band_brightness=self.band_brightness)
        return source.x, source.y

    @functools.cached_property
    def validation_arrays(self):
        source = make_source(self.size, self.n_val, VALIDATION_SEED, traced=False, band_brightness=self.band_brightness)
        return source.x, source.y


# The built-in model per source size: two strided convolutions for small images; for large ones
# (128x128) a model whose step a GPU notices, so starvation on a GPU says something.
BUILTIN_FILTERS = {"small": (8, 16), "large": (32, 64, 128)}


def make_model(task: Task, seed: int):
    """The task's model, the same weights for the same seed: the user's (``task.model``) or the
    built-in one sized to the images (strided convolutions, global pooling, a linear read-out)."""
    import keras

    from feedbench.core.data import NUM_CLASSES, SIZES

    keras.utils.set_random_seed(seed)
    if task.model:
        return user_model(task.model, SIZES[task.size], NUM_CLASSES)
    filters = BUILTIN_FILTERS[task.size]
    model = keras.Sequential(
        [
            keras.Input(SIZES[task.size]),
            *[keras.layers.Conv2D(f, 3, strides=2, activation="relu") for f in filters],
            keras.layers.Flatten() if len(filters) == 2 else keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(NUM_CLASSES),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(task.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _val_accuracy(history, task: Task) -> float:
    if "val_accuracy" not in history.history:
        from feedbench.core.errors import PluginError

        raise PluginError(
            f"model {task.model} reports no accuracy (fit's history has {sorted(history.history)}); expected "
            "metrics=['accuracy'] in its compile()"
        )
    return float(history.history["val_accuracy"][-1])


def user_model(path: str, input_shape: tuple, num_classes: int):
    """The user's compiled model from ``module:callable``, called with the keywords it takes of
    ``input_shape`` and ``num_classes``; one line for each way that fails."""
    import inspect

    from feedbench.core.errors import FactoryFailed, PluginError, one_line
    from feedbench.generators.registry import load_callable

    factory = load_callable(path)
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    offered = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    try:
        model = factory(**{k: v for k, v in offered.items() if k in accepted})
    except Exception as exc:
        raise FactoryFailed(f"model {path} raised {one_line(exc)}; run with --debug for the traceback") from exc
    if not hasattr(model, "fit") or getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise PluginError(
            f"model {path} returned a {type(model).__name__}, not a compiled Keras model; expected "
            "model.compile(optimizer=..., loss=..., metrics=['accuracy']) before returning it"
        )
    return model


@dataclass
class FitRun:
    seed: int
    val_accuracy: float
    samples_per_s: float  # median over the epochs after the first
    train_epoch_s: list[float]


def _train_clock():
    """A callback timing each epoch's train steps (validation excluded)."""
    import keras

    class TrainClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self._start = self._last = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = self._last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(self._last - self._start)

    return TrainClock()


def _fit(model, data, task: Task, seed: int, name: str, timeout_s: float, validation, closers=(), **fit_args) -> FitRun:
    clock = _train_clock()
    with supervised(name, timeout_s, closers=closers):
        history = model.fit(
            data, epochs=task.epochs, validation_data=validation, verbose=0, callbacks=[clock], **fit_args
        )
    steady = clock.seconds[1:]  # the first epoch compiles the step
    return FitRun(seed, _val_accuracy(history, task), float(task.n_train / np.median(steady)), clock.seconds)


def fit_built(built: Built, model, task: Task, seed: int, timeout_s: float = 300.0, validation=None) -> FitRun:
    """``model.fit`` on an implementation's dataset, exactly as a user calls it (``model``: made by
    ``make_model(task, seed)``; the ceiling is timed on it next)."""
    try:
        return _fit(
            model,
            built.dataset,
            task,
            seed,
            built.spec.impl,
            timeout_s,
            validation or task.validation_arrays,
            closers=[built.close],
            **built.fit_kwargs(),
        )
    finally:
        built.close()


def one_batch_dataset(x, y, batches: int):
    import keras

    class OneBatch(keras.utils.PyDataset):
        """One prepared batch, ``batches`` times an epoch: what a pipeline doing no work delivers."""

        def __len__(self):
            return batches

        def __getitem__(self, index):
            return x, y

    return OneBatch()


def fit_ceiling(model, task: Task, seed: int, timeout_s: float = 300.0) -> float:
    """Samples/s of the task's model fed one prepared batch over and over: the input side's ceiling.

    Measured beside each fit, never cached: one measurement shared by a grid's settings would put
    its own error into all their ratios alike. ``model``: the one the setting was just fitted with,
    so the ceiling neither builds nor compiles a model of its own (the step's cost is the same)."""
    x, y = task.training_arrays(seed)
    batches = math.ceil(task.n_train / task.batch_size)
    data = one_batch_dataset(np.array(x[: task.batch_size]), np.array(y[: task.batch_size]), batches)
    clock = _train_clock()
    with supervised("ceiling (one prepared batch)", timeout_s):
        model.fit(data, epochs=task.epochs, verbose=0, callbacks=[clock], shuffle=False)
    return float(batches * task.batch_size / np.median(clock.seconds[1:]))


@functools.cache  # once per process: every setting of a grid compares with it
def fit_baseline(task: Task, seed: int, timeout_s: float = 300.0) -> FitRun:
    """The reference: ``model.fit(x, y)`` on the training arrays in memory."""
    x, y = task.training_arrays(seed)
    model = make_model(task, seed)
    return _fit(
        model,
        x,
        task,
        seed,
        "baseline (arrays in memory)",
        timeout_s,
        task.validation_arrays,
        y=y,
        batch_size=task.batch_size,
        shuffle=True,
    )


@dataclass
class TrainingSummary(Record):
    """A training measurement's figures: accuracy against the paired baseline, speed, starvation."""

    device: str
    seeds: int
    val_accuracy: float
    val_accuracy_spread: float
    baseline_val_accuracy: float
    baseline_val_accuracy_spread: float
    accuracy_vs_baseline: float
    accuracy_vs_baseline_spread: float
    accuracy_noise: float  # two standard errors of the paired differences
    accuracy_verdict: str
    fit_samples_per_s: float
    baseline_samples_per_s: float  # fit(x, y) on the arrays in memory
    starvation: float  # 1 - fit / ceiling (stored results before the ceiling: 1 - fit / arrays)
    ceiling_samples_per_s: float | None = None  # one prepared batch over and over
    starvation_vs_arrays: float | None = None  # 1 - fit / in-memory arrays: negative when fit's array path is slower
    fit_over_ceiling_per_seed: list[float] | None = None  # each seed's fit over the ceiling timed beside it
    starvation_low: float | None = None  # its interval: two standard errors over the seeds
    starvation_high: float | None = None
    starvation_verdict: str | None = None  # "not starved, within noise" where it or its interval reaches 0


@dataclass
class TrainingResult:
    impl: str
    workers: int
    use_multiprocessing: bool
    device: str
    epochs: int
    runs: list[FitRun] = field(default_factory=list)
    baseline: list[FitRun] = field(default_factory=list)
    ceiling: list[float] = field(default_factory=list)  # samples/s, per seed

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    @property
    def differences(self) -> list[float]:
        """Per seed, the implementation's accuracy minus the baseline's (same initial weights)."""
        return [run.val_accuracy - base.val_accuracy for run, base in zip(self.runs, self.baseline)]

    def summary(self) -> TrainingSummary:
        accuracy = [run.val_accuracy for run in self.runs]
        base_accuracy = [run.val_accuracy for run in self.baseline]
        diffs = self.differences
        noise = NOISE_SE * _stdev(diffs) / math.sqrt(len(diffs))
        fit_sps = float(np.median([run.samples_per_s for run in self.runs]))
        base_sps = float(np.median([run.samples_per_s for run in self.baseline]))
        ceiling = float(np.median(self.ceiling)) if self.ceiling else None
        # each seed's fit over the ceiling timed beside it: starvation is 1 - their median, in the range
        # of the seeds' own
        per_seed = [run.samples_per_s / c for run, c in zip(self.runs, self.ceiling) if c] or None
        starved = [1.0 - r for r in per_seed] if per_seed else None
        starvation = float(np.median(starved)) if starved else 1.0 - fit_sps / base_sps
        # its interval: two standard errors over the seeds, as for accuracy (none with one seed)
        half = NOISE_SE * _stdev(starved) / math.sqrt(len(starved)) if starved and len(starved) > 1 else None
        mean_diff = statistics.fmean(diffs)
        return TrainingSummary(
            device=self.device,
            seeds=len(self.runs),
            val_accuracy=statistics.fmean(accuracy),
            val_accuracy_spread=_stdev(accuracy),
            baseline_val_accuracy=statistics.fmean(base_accuracy),
            baseline_val_accuracy_spread=_stdev(base_accuracy),
            accuracy_vs_baseline=mean_diff,
            accuracy_vs_baseline_spread=_stdev(diffs),
            accuracy_noise=noise,
            accuracy_verdict=_accuracy_verdict(mean_diff, noise) if len(diffs) > 1 else ONE_SEED,
            fit_samples_per_s=fit_sps,
            baseline_samples_per_s=base_sps,
            starvation=starvation,
            ceiling_samples_per_s=ceiling,
            starvation_vs_arrays=1.0 - fit_sps / base_sps,
            fit_over_ceiling_per_seed=per_seed,
            starvation_low=None if half is None else starvation - half,
            starvation_high=None if half is None else starvation + half,
            starvation_verdict=starvation_verdict(starvation, None if half is None else starvation - half),
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary().to_json()}


NOT_STARVED = "not starved, within noise"


def starvation_verdict(starvation: float, low: float | None = None) -> str:
    """Starvation within its physical range: where it (or the low end of its interval) reaches 0,
    fit waited for data no more than the ceiling's own timing varies."""
    if starvation <= 0 or (low is not None and low <= 0):
        return NOT_STARVED
    return f"starved: {starvation:.0%} of the step time waits for data"


def _stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _accuracy_verdict(mean_diff: float, noise: float) -> str:
    if abs(mean_diff) <= noise or mean_diff == 0:
        return "within seed noise"
    return "lower than baseline" if mean_diff < 0 else "higher than baseline"


def measure_training(
    spec: Spec,
    epochs: int = 5,
    seeds: int = 3,
    timeout_s: float = 300.0,
    plugins=(),
    preprocess_validation: bool = True,
    model: str | None = None,
) -> TrainingResult:
    """Train on ``spec``'s implementation for seeds spec.seed, spec.seed+1, ...; and on the baseline.

    ``preprocess_validation`` gives the validation arrays the same workload as
    the training batches (the ``numpy`` workload standardizes and blurs);
    without it, training and validation are preprocessed inconsistently.
    """
    if seeds < 1:
        raise ValueError(f"seeds={seeds} given; expected 1 or more")
    task = Task.of(spec, epochs, model)
    if required := settings.current().device:
        require_device(required)
    device = current_device()
    result = TrainingResult(spec.impl, spec.workers, spec.use_multiprocessing, device, epochs)
    validation = task.validation_arrays
    if preprocess_validation and spec.workload == "numpy":
        validation = (spec.work.apply(validation[0]), validation[1])
    for seed in range(spec.seed, spec.seed + seeds):
        built = build(replace(spec, seed=seed), plugins)
        model = make_model(task, seed)
        result.runs.append(fit_built(built, model, task, seed, timeout_s, validation))
        result.baseline.append(fit_baseline(task, seed, timeout_s))
        result.ceiling.append(fit_ceiling(model, task, seed, timeout_s))
    return result


# --------------------------------------------------------------------------- devices


def gpu_present() -> bool:
    """Whether this machine has an NVIDIA GPU, asked without loading a framework."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listing.returncode == 0 and "GPU" in listing.stdout


def device_env(device: str) -> dict[str, str]:
    """Environment for a process that must train on ``device`` (set before Keras loads)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {list(DEVICES)}")
    hide_gpus = {"CUDA_VISIBLE_DEVICES": "-1"} if device == "cpu" else {}
    return {DEVICE_ENV: device, **hide_gpus}


def current_device() -> str:
    """The device the active Keras backend computes on: "gpu" if it sees one, else "cpu"."""
    active = backend()
    if active == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if active == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if active == "jax":
        import jax

        return "gpu" if jax.default_backend() == "gpu" else "cpu"
    return "cpu"


def require_device(device: str) -> None:
    """Fail with one line when this process does not compute on ``device``."""
    have = current_device()
    if have != device:
        hint = {
            "gpu": "install the backend's GPU build (pip install 'tensorflow[and-cuda]', or jax/torch with CUDA)",
            "cpu": "set CUDA_VISIBLE_DEVICES=-1 before Keras loads",
        }[device]
        raise ValueError(
            f"device {device!r} asked for, but Keras backend {backend()!r} computes on {have!r} here; {hint}"
        )
