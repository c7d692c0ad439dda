"""The registry: stable implementation names, and plug-ins that join them.

Names are stable identifiers: they become asv result keys, and renaming one
breaks its history. Add, don't rename.

A plug-in is a factory ``factory(spec, source)`` returning a
``keras.utils.PyDataset``, a Python generator (or iterator) of batches, or a
``tf.data.Dataset``. It is named ``package.module:callable``, optionally
prefixed with ``name=``, and joins the registry from the command line
(``--plugin``), from the environment variable ``FEEDBENCH_PLUGINS``
(comma-separated), or from the entry-point group ``feedbench.generators``.
"""

from __future__ import annotations

import importlib
import os
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata

from feedbench.core import settings
from feedbench.core.data import make_source
from feedbench.core.errors import (
    BadDataset,
    FactoryFailed,
    FeedbenchError,
    MissingPackage,
    PluginError,
    UnknownImplementation,
    one_line,
)
from feedbench.core.spec import FAMILIES, Built, Spec, not_applicable
from feedbench.core.workloads import WORKLOADS
from feedbench.generators.adapters import OBJECT_PREFIX, SETTINGS_PREFIX, object_factory, settings_factory

ENTRY_POINT_GROUP = "feedbench.generators"


@dataclass(frozen=True)
class Implementation:
    name: str
    family: str | None  # None for a plug-in until it has built once
    shows: str
    factory: str  # "module:callable", imported only when building
    workloads: tuple[str, ...] = WORKLOADS
    plugin: bool = False
    needs: tuple[str, ...] = ()  # packages it imports (a missing one makes every setting n/a)
    # "module:function(spec) -> {setting: reason}" for a loader with workers of its own, which maps
    # the parallel settings it can; None: the family's rule (only PyDatasets take them)
    parallel_rule: str | None = None

    def workload_reason(self, workload: str) -> str | None:
        """Why this implementation cannot run ``workload``, or None when it can."""
        if workload in self.workloads:
            return None
        return f"workload {workload!r} given for {self.name}; it runs {', '.join(self.workloads)}"

    def missing_reason(self) -> str | None:
        """Why it cannot run on this machine (a package it needs is not installed), or None."""
        import importlib.util

        missing = [package for package in self.needs if importlib.util.find_spec(package) is None]
        if missing:
            return f"{self.name} needs {', '.join(missing)}, not installed here (pip install {' '.join(missing)})"
        return None

    def not_applicable(self, spec: Spec) -> dict[str, str]:
        """The settings of ``spec`` this implementation cannot honour, each with the reason."""
        if self.parallel_rule is None:
            return not_applicable(self.family, spec) if self.family else {}
        module, _, attr = self.parallel_rule.partition(":")
        return getattr(importlib.import_module(module), attr)(spec)

    def load(self) -> Callable:
        if self.factory.startswith(SETTINGS_PREFIX):
            return settings_factory(load_callable(self.factory[len(SETTINGS_PREFIX) :]))
        if self.factory.startswith(OBJECT_PREFIX):
            return object_factory(self.factory[len(OBJECT_PREFIX) :])
        if self.plugin:
            return load_callable(self.factory)
        module, _, attr = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:  # a missing backend package, not a bad name
            backend = os.environ.get("KERAS_BACKEND", "tensorflow")
            raise FeedbenchError(
                f"implementation {self.name!r} cannot load: {exc}; Keras backend {backend!r} "
                f"needs its package installed (pip install -e '.[{backend}]' for jax or torch)"
            ) from exc


BUILTINS: dict[str, Implementation] = {
    impl.name: impl
    for impl in (
        Implementation(
            "seed_unseeded",
            "pydataset",
            "unseeded tf.image flips written back into a view of the source: the source "
            "drifts under threads, not under processes",
            "feedbench.generators.seed_patterns:build_unseeded",
        ),
        Implementation(
            "seed_reseeded",
            "pydataset",
            "tf.random.set_seed(42) in every __getitem__: every batch gets the same flips, "
            "every epoch; augmentation is frozen",
            "feedbench.generators.seed_patterns:build_reseeded",
        ),
        Implementation(
            "seed_bounded",
            "pydataset",
            "slice end bounded with min(): identical to plain slicing, NumPy already clips slices",
            "feedbench.generators.seed_patterns:build_bounded",
        ),
        Implementation(
            "numpy_global",
            "pydataset",
            "flips and brightness from NumPy's global RNG: forked workers repeat each other's "
            "draws, one forked worker repeats them every epoch",
            "feedbench.generators.global_rng:build",
        ),
        Implementation(
            "keyed",
            "pydataset",
            "best practice: draws keyed by (seed, epoch, batch); the same stream under any "
            "worker setting, reproducible, augmentation varies by epoch",
            "feedbench.generators.keyed:build",
        ),
        Implementation(
            "shm",
            "pydataset",
            "keyed's stream from a persistent process pool writing into a shared-memory ring: "
            "no pickling, no fork per epoch",
            "feedbench.generators.shm:build",
        ),
        Implementation(
            "generator",
            "generator",
            "a plain Python generator: serial in the main process, needs steps_per_epoch",
            "feedbench.generators.pygen:build",
        ),
        Implementation(
            "tfdata",
            "tfdata",
            "native tf.data: seeded shuffle, stateless augmentation in a parallel map, prefetch; the speed to beat",
            "feedbench.generators.tfdata:build",
            workloads=("copy",),
        ),
        Implementation(
            "tfdata_pyfunc",
            "tfdata",
            "tf.data over a Python batch function (tf.numpy_function in a parallel map): "
            "the usual bridge from Python code",
            "feedbench.generators.tfdata:build_pyfunc",
        ),
        Implementation(
            "torch_dataloader",
            "torch_dataloader",
            "peer: keyed's batches from a torch DataLoader (map-style dataset of batches, persistent "
            "workers = workers with use_multiprocessing); what a torch user picks instead",
            "feedbench.generators.torch_loader:build",
            needs=("torch",),
            parallel_rule="feedbench.generators.torch_loader:not_applied",
        ),
        Implementation(
            "grain",
            "grain",
            "peer: keyed's batches from Grain (MapDataset, mp_prefetch workers = workers with "
            "use_multiprocessing, read threads without); the loader of the JAX ecosystem",
            "feedbench.generators.grain_loader:build",
            needs=("grain",),
            parallel_rule="feedbench.generators.grain_loader:not_applied",
        ),
        Implementation(
            "tfdata_service",
            "tfdata",
            "peer: tf.data served by a dispatcher and worker servers in their own processes "
            "(distribute); the path when input outgrows one machine's cores",
            "feedbench.generators.tfdata_service:build",
            workloads=("copy",),
            needs=("tensorflow",),
            parallel_rule="feedbench.generators.tfdata_service:not_applied",
        ),
    )
}


def load_callable(path: str) -> Callable:
    """Import ``package.module:callable`` with one clear error for each way it fails."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"plug-in path {path!r} given; expected 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error inside the module itself
        raise PluginError(
            f"plug-in {path!r}: module {module_name!r} does not import ({type(exc).__name__}: {exc})"
        ) from exc
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise PluginError(f"plug-in {path!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise PluginError(
            f"plug-in {path!r}: {attr!r} is a {type(target).__name__}, expected a callable factory(spec, source)"
        )
    return target


def parse_plugin(text: str) -> Implementation:
    """``[name=]package.module:callable`` as a registry entry."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = text.rpartition(":")[2], text
    name, path = name.strip(), path.strip()
    if not name.isidentifier():
        raise PluginError(f"plug-in name {name!r} given in {text!r}; expected a Python identifier")
    return Implementation(name, None, f"plug-in {path}", path, plugin=True)


def _entry_point_plugins() -> list[Implementation]:
    found = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.append(Implementation(entry.name, None, f"plug-in {entry.value}", entry.value, plugin=True))
    return found


def _env_plugins() -> list[Implementation]:
    return [parse_plugin(part) for part in settings.current().plugins]


def registry(plugins: list[str] | tuple[str, ...] = ()) -> dict[str, Implementation]:
    """Built-ins, then entry points, the environment, and ``plugins`` given here."""
    table = dict(BUILTINS)
    extra = _entry_point_plugins() + _env_plugins() + [parse_plugin(p) for p in plugins]
    for impl in extra:
        if impl.name in BUILTINS:
            raise PluginError(
                f"plug-in name {impl.name!r} ({impl.factory}) is taken by a built-in; "
                "give it another with name=package.module:callable"
            )
        table[impl.name] = impl
    return table


def get(name: str, plugins: list[str] | tuple[str, ...] = ()) -> Implementation:
    table = registry(plugins)
    if name in table:
        return table[name]
    if name.startswith((SETTINGS_PREFIX, OBJECT_PREFIX)):  # the Python API's datasets
        return Implementation(name, None, f"from the Python API: {name}", name, plugin=True)
    if ":" in name:  # a plug-in path given directly where a name is expected
        return parse_plugin(name)
    raise UnknownImplementation(f"unknown implementation {name!r}; expected one of {', '.join(sorted(table))}")


def build(spec: Spec, plugins: list[str] | tuple[str, ...] = ()) -> Built:
    """Build the dataset that ``spec`` names, on a source made for it."""
    impl = get(spec.impl, plugins)
    reason = impl.workload_reason(spec.workload)
    if reason:
        raise ValueError(reason)
    missing = impl.missing_reason()
    if missing:
        raise MissingPackage(missing)
    source = make_source(
        spec.size,
        spec.n_samples,
        spec.seed,
        spec.traced,
        spec.work.storage,
        band_brightness=spec.band_brightness,
        probe=spec.probe,
    )
    factory = impl.load()
    try:
        made = factory(spec, source)
    except FeedbenchError:
        raise
    except Exception as exc:  # the user's factory: one line, the traceback with --debug
        raise FactoryFailed(
            f"factory {impl.factory} of {impl.name!r} raised {one_line(exc)}; run with --debug for the traceback"
        ) from exc
    if impl.plugin:
        made = _wrap_plugin_result(impl, spec, source, made)
    if spec.fit_shuffle is not None and made.family == "pydataset":
        made.fit_shuffle = spec.fit_shuffle  # as a user's fit(shuffle=...) would be called
    _check_length(impl.name, made)
    return made


def _wrap_plugin_result(impl: Implementation, spec: Spec, source, made) -> Built:
    if isinstance(made, Built):
        return made
    family = family_of(made)
    if family is None:
        raise not_a_dataset(made, f"plug-in {impl.name!r} ({impl.factory})")
    if family == "pydataset":
        return Built(spec, family, made, source, fit_shuffle=spec.shuffle)
    return Built(
        spec, family, made, source, steps_per_epoch=spec.batches_per_epoch, not_applicable=not_applicable(family, spec)
    )


def family_of(obj) -> str | None:
    """Which Keras data path feeds ``obj``: one of FAMILIES, or None."""
    import keras

    if isinstance(obj, keras.utils.PyDataset):
        return "pydataset"
    if isinstance(obj, types.GeneratorType):  # Keras 3 takes generator objects, not other iterators
        return "generator"
    names = {(cls.__module__, cls.__name__) for cls in type(obj).__mro__}
    if any(module.startswith("tensorflow.python.") and name == "DatasetV2" for module, name in names):
        return "tfdata"
    if any(module.startswith("torch.utils.data") and name == "DataLoader" for module, name in names):
        return "torch_dataloader"
    if any(
        module.startswith("grain") and name in ("MapDataset", "IterDataset", "DataLoader") for module, name in names
    ):
        return "grain"
    return None


def not_a_dataset(made, who: str) -> BadDataset:
    """The one-line refusal for an object Keras's fit does not take, saying what would work."""
    kind = type(made).__name__
    if isinstance(made, Iterator) or hasattr(made, "__next__"):
        return BadDataset(
            f"{who} returned a {kind}, an iterator that is not a generator: Keras's fit does not accept it "
            "(it takes generator objects only); wrap it as (batch for batch in it), or return a "
            "keras.utils.PyDataset"
        )
    return BadDataset(
        f"{who} returned a {kind}; expected a keras.utils.PyDataset, a Python generator of batches, a "
        "tf.data.Dataset, a torch DataLoader or a Grain dataset"
    )


def _check_length(name: str, built: Built) -> None:
    assert built.family in FAMILIES, built.family
    if built.family != "pydataset":
        return
    try:
        batches = built.dataset.num_batches
    except Exception as exc:
        raise BadDataset(
            f"implementation {name!r}: len() of its PyDataset raised {one_line(exc)}; expected __len__ to return "
            "the number of batches, an int"
        ) from exc
    if batches is not None and (not isinstance(batches, int) or isinstance(batches, bool)):
        raise BadDataset(f"implementation {name!r}: __len__ returned {batches!r}; expected an int number of batches")
    if batches == 0:
        raise BadDataset(f"implementation {name!r} built a PyDataset of length 0; expected at least one batch")
