"""Is the stream the model sees the one you meant?

Four runs of the same spec:

- the setting under test (*main*), on the traced source;
- a *repeat* in a fresh process, what a user means by "I ran it again": ``reproducible``
  (a module-level RNG seeded at import starts again there, as it would for the user);
- the *serial reference* (``workers=1, use_multiprocessing=False``): ``matches_serial``; at the
  serial setting itself it is ``None`` (the setting is the reference, never compared with itself);
- a *probe* run: the same setting on a source whose samples all have identical content (a
  texture, so crops, shifts and rotations show), ids still traced. Two delivered samples with
  identical bytes then received identical random draws, whatever the augmentation (flips,
  noise, rotations, crops, normalisation after any of them). From it: whether there is random
  augmentation at all, ``repeated_draws`` and frozen augmentation (``epoch_diversity``,
  ``frozen_fraction``), each judged against the chance of two independent draws coinciding,
  which the probe run itself shows (rows of one batch are independent draws).

Rows are identified by the traced ids in the targets (``y[:, 1]``, or any target leaf shaped
``(rows, 2)``); when a generator transforms its labels (one-hot, shifted, dict targets) the
delivered rows are matched to source rows by content (exact bytes, or a flip of them). A figure
that cannot be computed is ``None`` with its reason, never 0.

- ``missing`` / ``duplicated``: per epoch, source samples not delivered and samples delivered
  more than once; ``never_delivered``: samples missing from every epoch of the run (an
  implementation that declares it drops an uneven last batch is reported in
  ``dropped_by_design`` instead);
- ``in_order``: for an unshuffled run, samples arrive in index order (informational when the
  dataset shuffles itself: its order changes between epochs, or is scrambled throughout);
- ``reproducible``, ``matches_serial``: byte-identical batches;
- ``source_intact``: the source arrays are unchanged after the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from feedbench.core.child import START_UP_S, ChildFailed, run_child, serve
from feedbench.core.records import Record
from feedbench.core.spec import Built, Spec
from feedbench.fit import driver, fork_hazard
from feedbench.fit.supervise import DEFAULT_TIMEOUT_S
from feedbench.generators import build

# A verdict on draws needs chance coincidences to be rare: at most this expected number.
CHANCE_PAIRS = 0.05
# Frozen augmentation: the share of draws repeated from the last epoch beyond chance, the
# significance of the excess, and how many comparisons a verdict needs at least.
FROZEN_THRESHOLD = 0.2
FROZEN_Z = 3.0
MIN_COMPARISONS = 20


@dataclass
class BatchDigest:
    epoch: int
    step: int
    rows: int
    content: str  # hash of every leaf: x, y and sample weights
    row_hashes: list[int]  # per row, of the inputs (x leaves) only
    ids: np.ndarray | None
    draw_hashes: list[int] | None = None  # per row, of the inputs shaped like the source's samples


@dataclass
class Stream:
    batches: list[BatchDigest]
    source_rows_changed: int  # source samples whose bytes the run changed
    identified_by: str | None  # "traced ids", "content matching", or None: rows not identified
    untouched: frozenset = frozenset()  # draw hashes of a source sample as it is (and its flips)
    aliased_batches: int = 0  # batches delivered in a buffer an earlier batch still held, or changed after delivery
    rows_checked: int = 0  # rows whose inputs content matching could place (traced ids)
    mismatched_rows: int = 0  # of those, rows whose inputs are another sample's than their id's

    def contents(self) -> list[tuple[int, int, str]]:
        return [(d.epoch, d.step, d.content) for d in self.batches]


# --------------------------------------------------------------------------- recording


def leaves(structure) -> list[np.ndarray]:
    """The arrays of a batch part as NumPy arrays, in the driver's order (dict keys sorted)."""
    return [np.asarray(leaf) for leaf in driver.leaves(structure)]


def _bytes(array: np.ndarray) -> bytes:
    """An array's content as bytes: for strings and objects the values, never their addresses."""
    if array.dtype.kind in "OUS":
        return "\x00".join(map(repr, array.ravel().tolist())).encode()
    return np.ascontiguousarray(array).tobytes()


def _hash(arrays) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(_bytes(array))
    return digest.hexdigest()


def _row_hashes(arrays, rows: int) -> list[int]:
    flat = [
        np.ascontiguousarray(a).reshape(rows, -1).view(np.uint8)
        for a in arrays
        if a.ndim and len(a) == rows and a.dtype.kind in "biufc"
    ]
    out = []
    for i in range(rows):
        digest = hashlib.blake2b(digest_size=8)
        for part in flat:
            digest.update(part[i].tobytes())
        out.append(int.from_bytes(digest.digest(), "little"))
    return out


class _Identifier:
    """Which source sample each delivered row came from.

    Traced ids in the targets first. A generator that transforms its labels (one-hot, shifted,
    dict targets) loses them, so then the inputs are matched to source rows by content: byte for
    byte (also a flipped row), else by correlation, which survives noise, brightness changes and
    normalisation (a random projection keeps it cheap); a row matched to no sample clearly
    leaves the batch unidentified.
    """

    MIN_CORRELATION = 0.7
    MIN_MARGIN = 0.15  # over the best other sample
    PROJECTED = 256

    def __init__(self, source):
        self.source = source
        self._exact: dict[bytes, int] | None = None
        self._projected: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.by_content = False

    def __call__(self, x_leaves, y_leaves, rows: int) -> np.ndarray | None:
        for leaf in y_leaves:
            if leaf.ndim == 2 and leaf.shape == (rows, 2) and leaf.dtype.kind in "iuf":
                ids = leaf[:, 1]
                if np.all(ids == np.round(ids)) and ((ids >= 0) & (ids < self.source.n)).all():
                    ids = ids.astype(np.int64)
                    # (label, id) rows, not a two-class one-hot: the labels must be the samples' own
                    if np.array_equal(leaf[:, 0].astype(np.int64), self.source.labels[ids]):
                        return ids
        shape = self.source.x.shape[1:]
        candidates = [leaf for leaf in x_leaves if leaf.shape[1:] == shape and leaf.dtype.kind == "f"]
        if not candidates or self._distinct() is False:
            return None
        found = self._match(np.ascontiguousarray(candidates[0], dtype=self.source.x.dtype))
        if found is not None:
            self.by_content = True
        return found

    def check_inputs(self, x_leaves, ids: np.ndarray) -> tuple[int, int]:
        """(rows placed, rows mismatched): each row's inputs against the source sample its traced id
        names. A row is placed by its exact bytes (or a flip of them), else by correlation; it is
        mismatched where it is another sample's exactly, or clearly another's and not its own (an
        augmented row that is neither is left unplaced)."""
        shape = self.source.x.shape[1:]
        candidates = [leaf for leaf in x_leaves if leaf.shape[1:] == shape and leaf.dtype.kind == "f"]
        if not candidates or not self._distinct():
            return 0, 0
        rows = np.ascontiguousarray(candidates[0], dtype=self.source.x.dtype)
        exact = [self._exact.get(row.tobytes()) for row in rows]
        placed = sum(i is not None for i in exact)
        mismatched = sum(i is not None and i != own for i, own in zip(exact, ids))
        others = [k for k, i in enumerate(exact) if i is None]
        if others:
            sources, source_ids, projection = self._projection()
            delivered = _normalized(rows[others].reshape(len(others), -1)) @ projection
            delivered /= np.linalg.norm(delivered, axis=1, keepdims=True) + 1e-12
            for k, row in zip(others, delivered @ sources.T):
                own = row[source_ids == ids[k]].max()
                best = int(np.argmax(row))
                margin = row[best] - row[source_ids != source_ids[best]].max()
                clearly_other = row[best] >= self.MIN_CORRELATION and margin >= self.MIN_MARGIN
                if own >= self.MIN_CORRELATION:
                    placed += 1
                elif clearly_other and source_ids[best] != ids[k]:
                    placed += 1
                    mismatched += 1
        return int(placed), int(mismatched)

    def _variants(self) -> list[np.ndarray]:
        x = np.asarray(self.source.x)
        return [x, x[:, :, ::-1], x[:, ::-1]] if x.ndim == 4 else [x]  # the flips augmentation commonly applies

    def _distinct(self) -> bool:
        """Whether source rows can be told apart at all (the probe source's cannot)."""
        if self._exact is None:
            index: dict[bytes, int] = {}
            for variant in reversed(self._variants()):  # the unflipped rows win a tie
                for i, row in enumerate(np.ascontiguousarray(variant)):
                    index[row.tobytes()] = i
            self._exact = index if len(index) >= self.source.n else {}
        return bool(self._exact)

    def _match(self, rows: np.ndarray) -> np.ndarray | None:
        exact = [self._exact.get(row.tobytes()) for row in rows]
        if all(i is not None for i in exact):
            return np.array(exact, dtype=np.int64)
        sources, ids, projection = self._projection()
        delivered = _normalized(rows.reshape(len(rows), -1)) @ projection
        delivered /= np.linalg.norm(delivered, axis=1, keepdims=True) + 1e-12
        similarity = delivered @ sources.T  # (rows, n x variants)
        found = []
        for row in similarity:
            order = np.argsort(row)[::-1]
            best = order[0]
            other = next((j for j in order[1:] if ids[j] != ids[best]), None)
            margin = row[best] - (row[other] if other is not None else -1.0)
            if row[best] < self.MIN_CORRELATION or margin < self.MIN_MARGIN:
                return None
            found.append(ids[best])
        return np.array(found, dtype=np.int64)

    def _projection(self):
        if self._projected is None:
            variants = self._variants()
            dims = int(np.prod(self.source.x.shape[1:]))
            rng = np.random.default_rng(0)
            projection = (rng.standard_normal((dims, self.PROJECTED)) / np.sqrt(self.PROJECTED)).astype(np.float32)
            sources = np.concatenate([_normalized(v.reshape(len(v), -1)) @ projection for v in variants])
            sources /= np.linalg.norm(sources, axis=1, keepdims=True) + 1e-12
            ids = np.tile(np.arange(self.source.n), len(variants))
            self._projected = (sources, ids, projection)
        sources, ids, projection = self._projected
        return sources, ids, projection


def _normalized(rows: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit norm: correlation by a dot product."""
    rows = rows.astype(np.float32) - rows.mean(axis=1, keepdims=True, dtype=np.float32)
    return rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12)


def record(built: Built, epochs: int, timeout_s: float) -> Stream:
    """Run once and keep a compact digest of every delivered batch."""
    source = built.source
    pristine = np.array(source.x)  # the source as it was
    identify = _Identifier(source)
    digests = []
    returned, received = _AliasWatch(), _AliasWatch()  # from the generator, at the consumer

    def between_epochs(epoch: int) -> None:  # an epoch's batches are in: what on_epoch_end rewrites is no alias
        returned.forget()
        received.forget()

    placed = mismatched = 0
    drive = driver.drive(
        built, epochs, timeout_s, materialize=True, between_epochs=between_epochs, watch=returned.returned
    )
    with contextlib.closing(drive) as batches:
        for batch in batches:
            x_leaves, y_leaves = leaves(batch.x), leaves(batch.y)
            received.received(x_leaves, y_leaves + leaves(batch.sample_weight))
            images = [leaf for leaf in x_leaves if leaf.shape[1:] == source.x.shape[1:]] or x_leaves
            ids = identify(x_leaves, y_leaves, batch.rows)
            if ids is not None and not identify.by_content:  # ids from the targets: do the inputs agree?
                found = identify.check_inputs(x_leaves, ids)
                placed, mismatched = placed + found[0], mismatched + found[1]
            digests.append(
                BatchDigest(
                    epoch=batch.epoch,
                    step=batch.step,
                    rows=batch.rows,
                    content=_hash(x_leaves + y_leaves + leaves(batch.sample_weight)),
                    row_hashes=_row_hashes(x_leaves, batch.rows),
                    ids=ids,
                    draw_hashes=_row_hashes(images, batch.rows),
                )
            )
    changed = int((np.asarray(source.x) != pristine).reshape(source.n, -1).any(axis=1).sum())
    if digests and all(d.ids is not None for d in digests):
        how = "content matching" if identify.by_content else "traced ids"
    else:
        how = None
    sample = pristine[:1]
    variants = [sample, sample[:, :, ::-1], sample[:, ::-1]] if sample.ndim == 4 else [sample]
    untouched = frozenset(_row_hashes([v], 1)[0] for v in variants)
    # one overwrite can show where the batch was returned and where it was received: the larger count
    return Stream(digests, changed, how, untouched, max(returned.count, received.count), placed, mismatched)


class _AliasWatch:
    """Batches whose inputs arrive in the very buffer (same address, same size) an earlier batch of
    the epoch, still held, came in, where that earlier batch was another one (its other parts differ)
    or its bytes changed since it came: one buffer returned for two batches, the first overwritten by
    the second. Watched where Keras's adapter takes each batch from a PyDataset (whatever the
    conversion later copies) and where the consumer receives it (every family). The last ``WINDOW``
    batches of the epoch are held, so their memory cannot be freed and given out again. Views of data
    nobody writes (the same rows read again, overlapping windows of a series) are no alias; what
    on_epoch_end rewrites in place (a shuffle of the dataset's own arrays) is forgotten with the epoch."""

    WINDOW = 8

    def __init__(self):
        self.held: list[tuple[list[np.ndarray], str, str]] = []  # inputs, their bytes, the other parts' bytes
        self.count = 0
        self._lock = threading.Lock()

    def forget(self) -> None:
        with self._lock:
            self.held = []

    def returned(self, batch) -> None:
        """A batch as the generator returned it: (x, y[, sample_weight]), or x alone."""
        if isinstance(batch, (tuple, list)) and batch:
            self.received(leaves(batch[0]), leaves(list(batch[1:])))
        else:
            self.received(leaves(batch), [])

    def received(self, x_leaves: list[np.ndarray], other_leaves: list[np.ndarray]) -> None:
        inputs = [leaf for leaf in x_leaves if leaf.dtype.kind in "biufc" and leaf.nbytes]
        others = _hash(other_leaves)
        with self._lock:
            aliased = any(
                any(_same_buffer(a, b) for a in inputs for b in earlier)
                and (others != their_others or _hash(earlier) != was)
                for earlier, was, their_others in self.held
            )
            self.count += aliased
            self.held = [*self.held, (inputs, _hash(inputs), others)][-self.WINDOW :]


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """The same memory: the same first byte and size (a view that starts elsewhere is another window)."""
    return a.nbytes == b.nbytes and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def record_fresh(
    spec: Spec, epochs: int, timeout_s: float, plugins=(), role: str = "repeat", cancel: threading.Event | None = None
) -> Stream:
    """``record`` in a fresh process: the run a user gets from a new script (module-level state anew)."""
    request = {"spec": spec.to_dict(), "epochs": epochs, "timeout_s": timeout_s, "plugins": list(plugins)}
    what = f"{spec.impl}: the {role} run in a fresh process"
    try:
        found = run_child("feedbench.measure.determinism", request, timeout_s + START_UP_S, what=what, cancel=cancel)
    except ChildFailed as exc:  # a run that failed still says where TensorFlow ran in its forked workers
        for item in exc.results:
            fork_hazard.adopt(item.get("forked_tensorflow", []))
        raise
    if not found:
        raise ChildFailed(f"{what} ended without a result")
    fork_hazard.adopt(found[0].get("forked_tensorflow", []))  # the verdict counts that process's workers too
    return _stream_from_json(found[0])


def _record_in_child(request: dict):
    built = build(Spec(**request["spec"]), tuple(request["plugins"]))
    try:
        stream = _stream_to_json(record(built, request["epochs"], request["timeout_s"]))
    except Exception:
        yield {"forked_tensorflow": fork_hazard.since(0)}  # handed back before the error
        raise
    yield {**stream, "forked_tensorflow": fork_hazard.since(0)}


def _stream_to_json(stream: Stream) -> dict:
    batches = [
        [d.epoch, d.step, d.rows, d.content, d.row_hashes, None if d.ids is None else d.ids.tolist()]
        for d in stream.batches
    ]
    return {
        "batches": batches,
        "source_rows_changed": stream.source_rows_changed,
        "identified_by": stream.identified_by,
        "aliased_batches": stream.aliased_batches,
        "rows_checked": stream.rows_checked,
        "mismatched_rows": stream.mismatched_rows,
    }


def _stream_from_json(data: dict) -> Stream:
    batches = [
        BatchDigest(epoch, step, rows, content, hashes, None if ids is None else np.array(ids, dtype=np.int64))
        for epoch, step, rows, content, hashes, ids in data["batches"]
    ]
    return Stream(
        batches,
        data["source_rows_changed"],
        data["identified_by"],
        aliased_batches=data["aliased_batches"],
        rows_checked=data["rows_checked"],
        mismatched_rows=data["mismatched_rows"],
    )


# --------------------------------------------------------------------------- the result


@dataclass
class DeterminismFigures(Record):
    """The determinism verdicts of a setting and the counts behind them (for reports and asv)."""

    missing: int | None = None
    duplicated: int | None = None
    in_order: bool | None = None
    reproducible: bool | None = None
    matches_serial: bool | None = None
    epoch_diversity: float | None = None
    repeated_draws: int | None = None
    source_intact: bool | None = None
    source_rows_changed: int | None = None
    batches_differing_repeat: int | None = None
    batches_differing_serial: int | None = None
    dropped_by_design: int | None = None
    identified_by: str | None = None
    never_delivered: int | None = None
    augmented: bool | None = None  # random augmentation seen in the probe run
    frozen_fraction: float | None = None  # share of draws repeated from the last epoch, beyond chance
    frozen_z: float | None = None  # its significance (one-sided binomial z): the verdict needs FROZEN_Z or more
    shuffles_itself: bool | None = None
    identical_batches: int | None = None  # own data: pairs of byte-identical batches in one epoch
    aliased_batches: int | None = None  # batches received in an earlier batch's buffer, or changed after receipt
    mismatched_inputs: int | None = None  # rows whose inputs are another sample's than their traced id names
    coverage_spread: int | None = None  # partial epochs: most minus fewest deliveries of a sample over the run
    coverage_note: str | None = None  # partial epochs: where coverage went uneven, with the counts


@dataclass
class DeterminismResult(DeterminismFigures):
    """The figures (``DeterminismFigures``), and the raw data they were computed from."""

    source_rows_changed: int = 0  # counted whenever the source was checked: 0, not unknown
    dropped_by_design: int = 0
    missing_per_epoch: list[int] | None = None
    duplicated_per_epoch: list[int] | None = None
    chance_same_draw: float | None = None  # how often two independent draws coincide (from the probe)
    inputs_checked: int | None = None  # rows content matching could place
    reasons: dict[str, str] = field(default_factory=dict)  # why a figure is None

    def to_dict(self) -> dict:
        return asdict(self)

    def figures(self) -> DeterminismFigures:
        """The figures alone, as reports and asv read them."""
        return DeterminismFigures(**{f.name: getattr(self, f.name) for f in fields(DeterminismFigures)})

    def problems(self) -> list[str]:
        """The names of the checks that failed (None is 'could not tell', not a failure)."""
        failed = []
        if self.never_delivered:
            failed.append("never_delivered")
        if self.missing and not self.never_delivered:
            failed.append("missing")
        if self.duplicated:
            failed.append("duplicated")
        if self.identical_batches:
            failed.append("identical_batches")
        if self.in_order is False and not self.shuffles_itself:
            failed.append("in_order")
        if self.reproducible is False:
            failed.append("reproducible")
        if self.matches_serial is False:
            failed.append("matches_serial")
        frozen = self.frozen_fraction is not None and self.frozen_fraction >= FROZEN_THRESHOLD
        if frozen and (self.frozen_z or 0) >= FROZEN_Z:
            failed.append("epoch_diversity")
        if self.repeated_draws:
            failed.append("repeated_draws")
        if self.source_intact is False:
            failed.append("source_intact")
        if self.aliased_batches:
            failed.append("aliased_batches")
        if self.mismatched_inputs:
            failed.append("mismatched_inputs")
        if self.coverage_spread is not None and self.coverage_spread > 1:
            failed.append("uneven_coverage")
        return failed


# --------------------------------------------------------------------------- measuring


def measure_determinism(
    spec: Spec, epochs: int = 3, timeout_s: float = DEFAULT_TIMEOUT_S, plugins=(), fresh: bool = True
) -> DeterminismResult:
    """Run the setting, its repeat, the serial reference and the probe, and compare.

    With ``fresh`` (the default) the setting, its repeat and the serial reference each run in a
    fresh process, at once, as a user's new script would: module-level state (a seed set at
    import) starts anew, and nothing a previous run did in this process carries over. The probe
    runs here meanwhile (it looks at draws, not at reproducibility).
    """
    built = build(spec, plugins)
    built.close()
    serial_spec = replace(spec, workers=1, use_multiprocessing=False)
    runs = {"main": spec, "repeat": spec}
    # a loader with its own workers (applied_settings) has a serial reference as a PyDataset does
    if serial_spec != spec and (built.family == "pydataset" or built.applied_settings is not None):
        runs["serial"] = serial_spec
    # On the user's own data (not traced) there is no feedbench source to probe with.
    probe_spec = replace(spec, probe=True) if spec.traced else None
    reference_key = _reference_key(serial_spec, epochs, plugins)
    known_serial = _SERIAL_RUNS.get(reference_key) if fresh and "serial" in runs else None
    if known_serial is not None:  # this process already ran the reference in a fresh process
        del runs["serial"]
    if fresh:
        cancel = threading.Event()  # an interrupt or a failure here ends the fresh runs at once
        at_once = max(1, min(len(runs), os.cpu_count() or 1))
        with ThreadPoolExecutor(at_once) as pool:
            try:
                pending = {
                    role: pool.submit(record_fresh, s, epochs, timeout_s, plugins, role, cancel)
                    for role, s in runs.items()
                }
                probe = record(build(probe_spec, plugins), epochs, timeout_s) if probe_spec else None
                streams = {role: future.result() for role, future in pending.items()}
            except BaseException:
                cancel.set()
                raise
    else:
        streams = {role: record(build(s, plugins), epochs, timeout_s) for role, s in runs.items()}
        probe = record(build(probe_spec, plugins), epochs, timeout_s) if probe_spec else None
    serial = streams["serial"].contents() if "serial" in streams else known_serial
    if fresh:
        _remember_serial(reference_key, serial if spec != serial_spec else streams["main"].contents())
    return analyze(built, streams["main"], streams["repeat"].contents(), serial, probe)


# The serial reference's batches, per (serial spec, epochs, plug-ins, environment): a fresh run gives
# the same batches whichever setting asks, so a sweep's settings share one run of it.
_SERIAL_RUNS: dict[tuple, list] = {}
_SERIAL_RUNS_KEPT = 16


def _reference_key(serial_spec: Spec, epochs: int, plugins) -> tuple:
    return (repr(sorted(serial_spec.to_dict().items())), epochs, tuple(plugins), frozenset(os.environ.items()))


def _remember_serial(key: tuple, contents) -> None:
    if contents is None:
        return
    _SERIAL_RUNS.pop(key, None)
    _SERIAL_RUNS[key] = contents
    while len(_SERIAL_RUNS) > _SERIAL_RUNS_KEPT:
        del _SERIAL_RUNS[next(iter(_SERIAL_RUNS))]


def analyze(built: Built, main: Stream, repeat, serial, probe: Stream | None) -> DeterminismResult:
    """Compare the runs; ``repeat`` and ``serial`` are batch contents (None: the setting is the reference)."""
    result = DeterminismResult(source_rows_changed=main.source_rows_changed)
    reasons = result.reasons
    result.source_intact = main.source_rows_changed == 0
    # fit(shuffle=True) orders a PyDataset's batches with Python's global random: that order is
    # fit's, not the generator's, so each epoch's batches are then compared as a set.
    order_free = built.fit_shuffle
    if order_free:
        main_contents, repeat, serial = _by_epoch(main.contents()), _by_epoch(repeat), _by_epoch(serial)
    else:
        main_contents = main.contents()
    result.batches_differing_repeat = _differing(main_contents, repeat)
    result.reproducible = result.batches_differing_repeat == 0
    if serial is None:
        spec = built.spec
        is_serial = spec.workers == 1 and not spec.use_multiprocessing
        reasons["matches_serial"] = (
            "this setting is the serial reference" if is_serial else f"a {built.family} has no serial form to compare"
        )
        reasons["batches_differing_serial"] = reasons["matches_serial"]
    elif not result.reproducible:
        reasons["matches_serial"] = (
            "the stream is not reproducible, so a difference from the serial run would say nothing about the setting"
        )
        result.batches_differing_serial = _differing(main_contents, serial)
    else:
        result.batches_differing_serial = _differing(main_contents, serial)
        result.matches_serial = result.batches_differing_serial == 0
    result.identified_by = main.identified_by
    result.aliased_batches = main.aliased_batches
    _inputs(result, built, main)
    if not built.spec.traced:
        own = "own data: feedbench does not know which sample a row is (traced mode hands the factory arrays with ids)"
        for key in ("missing", "duplicated", "never_delivered", "in_order", "source_intact"):
            reasons[key] = own
        result.source_intact = None
        result.identical_batches = _identical_batches(main)
    elif main.identified_by is None:
        why = (
            "delivered rows could not be traced to source samples: no ids in the targets (y[:, 1]) and the "
            "inputs do not match source rows byte for byte (augmented or transformed)"
        )
        for key in ("missing", "duplicated", "never_delivered", "in_order"):
            reasons[key] = why
    else:
        _coverage(result, built, main)
        _order(result, built, main)
    if probe is None:
        for key in ("repeated_draws", "epoch_diversity", "augmented"):
            reasons[key] = "own data: the probe run needs feedbench's traced source"
    else:
        _draws(result, probe)
    return result


def _inputs(result: DeterminismResult, built: Built, main: Stream) -> None:
    """Whether each delivered input is the sample its traced id names."""
    if not built.spec.traced:
        result.reasons["mismatched_inputs"] = "own data: no ids to check the inputs against"
    elif main.identified_by != "traced ids":
        result.reasons["mismatched_inputs"] = "no traced ids in the targets: rows were placed by their inputs alone"
    elif not main.rows_checked:
        result.reasons["mismatched_inputs"] = (
            "the inputs are augmented or transformed beyond what content matching tolerates: no row could be "
            "placed by its content"
        )
    else:
        result.mismatched_inputs = main.mismatched_rows
        result.inputs_checked = main.rows_checked


def _identical_batches(stream: Stream) -> int:
    """Pairs of batches of one epoch with byte-identical content (a batch served twice)."""
    pairs = 0
    for epoch in {d.epoch for d in stream.batches}:
        seen: dict[str, int] = {}
        for d in stream.batches:
            if d.epoch == epoch:
                pairs += seen.get(d.content, 0)
                seen[d.content] = seen.get(d.content, 0) + 1
    return pairs


def _ids_per_epoch(stream: Stream) -> dict[int, np.ndarray]:
    per_epoch: dict[int, list[np.ndarray]] = {}
    for digest in stream.batches:
        per_epoch.setdefault(digest.epoch, []).append(digest.ids)
    return {epoch: np.concatenate(parts) for epoch, parts in sorted(per_epoch.items())}


def _coverage(result: DeterminismResult, built: Built, main: Stream) -> None:
    n = built.source.n
    per_epoch = _ids_per_epoch(main)
    seen = np.zeros(n, dtype=bool)
    missing, duplicated = [], []
    for ids in per_epoch.values():
        counts = np.bincount(ids, minlength=n)
        seen |= counts > 0
        missing.append(int((counts == 0).sum()))
        duplicated.append(int((counts > 1).sum()))
    dropped = n % built.spec.batch_size if built.drops_last_partial else 0
    result.dropped_by_design = dropped
    result.duplicated_per_epoch = duplicated
    result.duplicated = sum(duplicated)
    steps = built.spec.steps
    whole = _whole_epoch_batches(built)
    if steps is not None and steps < whole:
        _coverage_over_the_run(result, built, per_epoch, steps)
        return
    result.missing_per_epoch = [max(0, m - dropped) for m in missing]
    result.missing = sum(result.missing_per_epoch)
    never = int((~seen).sum())
    result.never_delivered = never if not dropped else max(0, never - dropped)


def _whole_epoch_batches(built: Built) -> int:
    """The batches of an epoch that covers the dataset: its own length, or (an endless dataset, a
    generator) as many as its samples fill."""
    if built.family == "pydataset" and built.dataset.num_batches is not None:
        return built.dataset.num_batches
    if built.drops_last_partial:
        return built.spec.n_samples // built.spec.batch_size
    return built.spec.batches_per_epoch


def _coverage_over_the_run(result: DeterminismResult, built: Built, per_epoch: dict, steps: int) -> None:
    """fit(steps_per_epoch=k) below the dataset's length: an epoch covers part of it, and the next
    resumes where it stopped (serially). Every sample should then be seen equally often over the run,
    to within one: the spread of the counts, and the first epoch after which it went past one."""
    n = built.source.n
    why = (
        f"fit's steps_per_epoch ({steps}) covers {steps * built.spec.batch_size} of {n} samples an epoch: "
        "coverage is judged over the run (coverage_spread)"
    )
    result.reasons["missing"] = why
    if built.drops_last_partial:  # which samples it drops by design moves with its shuffle
        result.reasons["coverage_spread"] = result.reasons["never_delivered"] = (
            f"{built.spec.impl} drops an uneven last batch by design: coverage over the run is not judged"
        )
        return
    counts = np.zeros(n, dtype=np.int64)
    uneven_from = None
    for epoch, ids in per_epoch.items():
        counts += np.bincount(ids, minlength=n)
        if uneven_from is None and counts.max() - counts.min() > 1:
            uneven_from = epoch
    result.coverage_spread = int(counts.max() - counts.min())
    delivered = int(counts.sum())
    if delivered >= n:
        result.never_delivered = int((counts == 0).sum())
    else:
        result.reasons["never_delivered"] = f"the run delivered {delivered} rows, fewer than the {n} samples"
    if uneven_from is not None:
        spread = np.bincount(counts)
        seen = ", ".join(f"{k} times: {c}" for k, c in enumerate(spread) if c)
        result.coverage_note = (
            f"over {len(per_epoch)} epochs of {steps} batches, samples were seen {counts.min()} to {counts.max()} "
            f"times (samples seen {seen}); uneven from epoch {uneven_from + 1}"
        )


def _order(result: DeterminismResult, built: Built, main: Stream) -> None:
    per_epoch = _ids_per_epoch(main)
    orders = [ids.tolist() for ids in per_epoch.values()]
    changes = len(orders) > 1 and any(o != orders[0] for o in orders[1:])
    descents = [float(np.mean(np.diff(ids) < 0)) for ids in per_epoch.values() if len(ids) > 1]
    scrambled = bool(descents) and min(descents) >= 0.25
    result.shuffles_itself = bool(changes or scrambled) and not built.spec.shuffle
    if built.spec.shuffle or built.fit_shuffle:
        result.reasons["in_order"] = "the run is shuffled"
        return
    steps_in_order = all(
        [d.step for d in main.batches if d.epoch == e] == sorted(d.step for d in main.batches if d.epoch == e)
        for e in per_epoch
    )
    result.in_order = steps_in_order and all(np.array_equal(ids, np.sort(ids)) for ids in per_epoch.values())
    if result.in_order is False and result.shuffles_itself:
        result.reasons["in_order"] = "informational: the dataset shuffles itself"


def _draws(result: DeterminismResult, probe: Stream) -> None:
    """Random augmentation, repeated draws and frozen draws, read off the probe run.

    A batch delivered whole as the source sample is (augmentation switched off for the batch)
    shows no draws and is left out; and two independent draws coincide as often as two rows next
    to each other in one batch do (``chance``).
    """
    reasons = result.reasons
    batches = [d for d in probe.batches if d.rows]
    rows = [h for d in batches for h in (d.draw_hashes or d.row_hashes)]
    if not rows:
        for key in ("augmented", "repeated_draws", "epoch_diversity"):
            reasons[key] = "the probe run delivered nothing"
        return
    result.augmented = len(set(rows)) > 1
    if not result.augmented:
        why = "no random augmentation: every sample of the probe run was delivered with the same bytes"
        reasons["repeated_draws"] = reasons["epoch_diversity"] = reasons["frozen_fraction"] = why
        return
    # A batch delivered exactly as its source (one coin said "no augmentation" for every row) shows
    # no draws; in every other batch each row is a draw, unflipped rows included ("no flip" is one).
    batches = [d for d in batches if not _undrawn(d.draw_hashes or d.row_hashes, probe.untouched)]
    untouched = frozenset()
    pairs = [
        (a, b) for d in batches for a, b in zip(d.draw_hashes or d.row_hashes, (d.draw_hashes or d.row_hashes)[1:])
    ]
    chance = float(np.mean([a == b for a, b in pairs])) if pairs else None
    result.chance_same_draw = chance
    if chance is None or chance >= 0.99:
        why = (
            "one random draw per batch: too few independent draws to tell a repeat from chance"
            if chance is not None
            else "no two augmented rows side by side in a batch: no draws to compare"
        )
        reasons["repeated_draws"] = reasons["epoch_diversity"] = reasons["frozen_fraction"] = why
        return
    _repeated(result, batches, chance, untouched)
    _frozen(result, batches, chance, untouched)


def _undrawn(hashes: list[int], untouched: frozenset) -> bool:
    """Every row the source sample as it is (or one same flip of it): no draw to see in the batch."""
    return len(set(hashes)) == 1 and hashes[0] in untouched


def _repeated(result: DeterminismResult, batches: list[BatchDigest], chance: float, untouched: frozenset) -> None:
    """Pairs of different batches of one epoch whose rows received identical draws.

    Only batches big enough that two independent draws of all their rows coinciding is
    unlikely over the whole run are compared (a batch of 8 flipped rows repeats by chance).
    """
    by_epoch: dict[int, list[BatchDigest]] = {}
    for d in batches:
        by_epoch.setdefault(d.epoch, []).append(d)
    pairs_possible = sum(math.comb(len(v), 2) for v in by_epoch.values()) or 1
    p = chance if chance is not None else 1.0
    changed = {id(d): sum(h not in untouched for h in (d.draw_hashes or d.row_hashes)) for d in batches}
    eligible = {id(d) for d in batches if p ** changed[id(d)] * pairs_possible <= CHANCE_PAIRS}
    if not eligible:
        result.reasons["repeated_draws"] = (
            f"batches too small for identical draws to mean repeats (two independent rows coincide "
            f"{p * 100:.0f} % of the time)"
        )
        return
    repeated = 0
    for epoch_batches in by_epoch.values():
        seen: dict[tuple[int, ...], int] = {}
        for d in epoch_batches:
            if id(d) not in eligible:
                continue
            key = tuple(d.draw_hashes or d.row_hashes)
            repeated += seen.get(key, 0)
            seen[key] = seen.get(key, 0) + 1
    result.repeated_draws = repeated


def _frozen(result: DeterminismResult, batches: list[BatchDigest], chance: float, untouched: frozenset) -> None:
    """How many draws repeat the last epoch's (same position, or same sample), beyond chance.

    ``frozen_fraction`` = (unchanged - chance) / (1 - chance); the verdict also needs the excess
    to be significant (``frozen_z``, a one-sided binomial z-score, of at least FROZEN_Z) over at
    least MIN_COMPARISONS comparisons, so a few flips that happen to repeat raise no alarm.
    """
    epochs = sorted({d.epoch for d in batches})
    if len(epochs) < 2:
        result.reasons["epoch_diversity"] = result.reasons["frozen_fraction"] = "needs 2 or more epochs"
        return
    by_position: dict[tuple[int, int, int], int] = {}
    by_id: dict[tuple[int, int], int] = {}
    for d in batches:
        for i, h in enumerate(d.draw_hashes or d.row_hashes):
            if h in untouched:
                continue
            by_position[(d.epoch, d.step, i)] = h
            if d.ids is not None:
                by_id[(d.epoch, int(d.ids[i]))] = h
    views = [_unchanged(by_position, epochs, lambda key: key[1:])]
    if by_id:
        views.append(_unchanged(by_id, epochs, lambda key: key[1:]))
    views = [(same, total) for same, total in views if total >= MIN_COMPARISONS]
    if not views:
        result.reasons["epoch_diversity"] = result.reasons["frozen_fraction"] = (
            f"fewer than {MIN_COMPARISONS} augmented samples seen in two epochs"
        )
        return
    p = chance
    scored = []
    for same, total in views:
        fraction = (same / total - p) / (1 - p)
        spread = math.sqrt(total * p * (1 - p))
        z = (same - total * p) / spread if spread else (math.inf if same > total * p else 0.0)
        scored.append((fraction, z, same / total))
    fraction, z, unchanged = max(scored)
    result.epoch_diversity = 1.0 - unchanged
    result.frozen_fraction = max(0.0, min(1.0, fraction))
    result.frozen_z = z


def _unchanged(hashes: dict, epochs: list[int], where) -> tuple[int, int]:
    """(unchanged, compared): places (a position, or a sample id) whose bytes equal the epoch before's."""
    per_epoch: dict[int, dict] = {}
    for key, h in hashes.items():
        per_epoch.setdefault(key[0], {})[where(key)] = h
    same = total = 0
    for a, b in zip(epochs, epochs[1:]):
        shared = per_epoch.get(a, {}).keys() & per_epoch.get(b, {}).keys()
        same += sum(per_epoch[a][k] == per_epoch[b][k] for k in shared)
        total += len(shared)
    return same, total


def _by_epoch(contents: list | None) -> list | None:
    """Each epoch's batch contents in a canonical order (fit's own batch order taken out)."""
    if contents is None:
        return None
    return sorted((epoch, 0, content) for epoch, _, content in contents)


def _differing(a: list, b: list) -> int:
    """Batches at the same position whose bytes differ, plus any extra batches."""
    differ = sum(x[2] != y[2] or x[:2] != y[:2] for x, y in zip(a, b))
    return differ + abs(len(a) - len(b))


if __name__ == "__main__":
    sys.exit(serve(_record_in_child))
