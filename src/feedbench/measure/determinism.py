"""Is the stream the model sees the one you meant?

Three runs of the same spec: the setting under test, a repeat of it, and the
serial reference (``workers=1, use_multiprocessing=False``; the repeat serves
when the setting is serial itself). Rows are identified by the traced sample
ids for our sources, by content hashes for a user's generator; a figure that
needs ids is ``None`` with its reason when there are none.

- ``missing`` / ``duplicated``: per epoch, source samples never delivered and
  samples delivered more than once (a generator that drops an uneven last
  batch by design is reported in ``dropped_by_design``, not as missing);
- ``in_order``: for an unshuffled run, samples arrive in index order;
- ``reproducible``: the repeat delivers byte-identical batches;
- ``matches_serial``: the serial reference delivers byte-identical batches;
- ``epoch_diversity``: the fraction of samples whose delivered content
  changes from one epoch to the next (0: augmentation frozen);
- ``repeated_draws``: pairs of different batches whose rows received the
  identical random augmentation (forked workers sharing one NumPy RNG state,
  or a constant reseeded before every batch);
- ``source_intact``: the source arrays are unchanged after the run.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from feedbench.core.records import Record
from feedbench.core.spec import Built, Spec
from feedbench.fit import driver
from feedbench.fit.supervise import DEFAULT_TIMEOUT_S
from feedbench.generators import build

# Batches shorter than this carry too few random bits for an identical flip
# pattern to mean a repeated draw rather than chance (2**-16 per pair).
MIN_ROWS_FOR_DRAWS = 16


@dataclass
class BatchDigest:
    epoch: int
    step: int
    rows: int
    content: str  # hash of x and y bytes
    row_hashes: np.ndarray  # uint64, one per row (x bytes only)
    ids: np.ndarray | None
    draws: str | None  # hash of the augmentation each row received, relative to the source


@dataclass
class Stream:
    batches: list[BatchDigest]
    source_rows_changed: int  # source samples whose bytes the run changed
    traced: bool


def record(built: Built, epochs: int, timeout_s: float) -> Stream:
    """Run once and keep a compact digest of every delivered batch."""
    source = built.source
    pristine = np.array(source.x)  # the source as it was, to tell augmentation from content
    traced = source.traced
    digests = []
    with contextlib.closing(driver.drive(built, epochs, timeout_s, materialize=True)) as batches:
        for batch in batches:
            ids = _ids(batch.y, source.n) if traced else None
            digests.append(
                BatchDigest(
                    epoch=batch.epoch,
                    step=batch.step,
                    rows=len(batch.x),
                    content=_hash(batch.x, batch.y),
                    row_hashes=_row_hashes(batch.x),
                    ids=ids,
                    draws=_draws(batch.x, pristine, ids) if ids is not None else None,
                )
            )
    changed = int((np.asarray(source.x) != pristine).reshape(source.n, -1).any(axis=1).sum())
    return Stream(digests, changed, traced and all(d.ids is not None for d in digests))


def _ids(y, n: int) -> np.ndarray | None:
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] != 2:
        return None
    ids = y[:, 1].astype(np.int64)
    return ids if ((ids >= 0) & (ids < n)).all() else None


def _hash(*arrays) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _row_hashes(x) -> np.ndarray:
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    return np.array(
        [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") for row in flat],
        dtype=np.uint64,
    )


def _draws(x, pristine: np.ndarray, ids: np.ndarray) -> str | None:
    """Per row: was it flipped, and what remains once the flip is undone.

    For augmentation that does not depend on content (flips, brightness, noise)
    two rows that got the same random draw leave the same residual, whatever
    the sample; so equal batch descriptors mean repeated draws.
    """
    x = np.asarray(x, dtype=np.float32)
    original = pristine[ids]
    if original.shape != x.shape:
        return None
    mirrored = original[:, :, ::-1] if x.ndim == 4 else original
    flipped = np.abs(x - mirrored).reshape(len(x), -1).sum(1) < np.abs(x - original).reshape(len(x), -1).sum(1)
    residual = x - np.where(flipped.reshape(-1, *([1] * (x.ndim - 1))), mirrored, original)
    residual = np.round(residual, 4)
    per_row = {(bool(f), r.tobytes()) for f, r in zip(flipped, residual)}
    if len(per_row) == 1:
        return None  # every row got the same treatment: a fixed transform, not a random draw
    return _hash(flipped, residual)


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


@dataclass
class DeterminismResult:
    missing: int | None
    duplicated: int | None
    in_order: bool | None
    reproducible: bool
    matches_serial: bool
    epoch_diversity: float | None
    repeated_draws: int | None
    source_intact: bool
    source_rows_changed: int = 0
    dropped_by_design: int = 0
    missing_per_epoch: list[int] | None = None
    duplicated_per_epoch: list[int] | None = None
    batches_differing_repeat: int = 0
    batches_differing_serial: int = 0
    identified_by: str = "traced ids"
    reasons: dict[str, str] = field(default_factory=dict)  # why a figure is None

    def to_dict(self) -> dict:
        return asdict(self)

    def figures(self) -> DeterminismFigures:
        return DeterminismFigures(**{f: getattr(self, f) for f in DeterminismFigures.__dataclass_fields__})

    def problems(self) -> list[str]:
        """The names of the checks that failed (None is 'could not tell', not a failure)."""
        failed = []
        if self.missing:
            failed.append("missing")
        if self.duplicated:
            failed.append("duplicated")
        if self.in_order is False:
            failed.append("in_order")
        if not self.reproducible:
            failed.append("reproducible")
        if not self.matches_serial:
            failed.append("matches_serial")
        if self.epoch_diversity == 0:
            failed.append("epoch_diversity")
        if self.repeated_draws:
            failed.append("repeated_draws")
        if not self.source_intact:
            failed.append("source_intact")
        return failed


def measure_determinism(
    spec: Spec, epochs: int = 3, timeout_s: float = DEFAULT_TIMEOUT_S, plugins=()
) -> DeterminismResult:
    """Run the setting, its repeat and the serial reference, and compare."""
    built = build(spec, plugins)
    main = record(built, epochs, timeout_s)
    repeat = record(build(spec, plugins), epochs, timeout_s)
    serial_spec = replace(spec, workers=1, use_multiprocessing=False)
    is_serial = serial_spec == spec or built.family != "pydataset"
    serial = repeat if is_serial else record(build(serial_spec, plugins), epochs, timeout_s)
    return analyze(built, main, repeat, serial)


def analyze(built: Built, main: Stream, repeat: Stream, serial: Stream) -> DeterminismResult:
    reasons: dict[str, str] = {}
    differing_repeat = _differing(main, repeat)
    differing_serial = _differing(main, serial)
    result = DeterminismResult(
        missing=None,
        duplicated=None,
        in_order=None,
        reproducible=differing_repeat == 0,
        matches_serial=differing_serial == 0,
        epoch_diversity=None,
        repeated_draws=None,
        source_intact=main.source_rows_changed == 0,
        source_rows_changed=main.source_rows_changed,
        batches_differing_repeat=differing_repeat,
        batches_differing_serial=differing_serial,
        identified_by="traced ids" if main.traced else "content hashes",
        reasons=reasons,
    )
    if not main.traced:
        why = "the stream carries no traced sample ids (y[:, 1]); only content hashes, which augmentation changes"
        for key in ("missing", "duplicated", "in_order", "epoch_diversity", "repeated_draws"):
            reasons[key] = why
        return result
    _coverage(result, built, main)
    if built.spec.shuffle:
        reasons["in_order"] = "the run is shuffled"
    else:
        result.in_order = all(
            np.array_equal(ids, np.sort(ids)) and _increasing_steps(main, epoch)
            for epoch, ids in _ids_per_epoch(main).items()
        )
    _diversity(result, main)
    _repeated_draws(result, built, main)
    return result


def _ids_per_epoch(stream: Stream) -> dict[int, np.ndarray]:
    per_epoch: dict[int, list[np.ndarray]] = {}
    for digest in stream.batches:
        per_epoch.setdefault(digest.epoch, []).append(digest.ids)
    return {epoch: np.concatenate(parts) for epoch, parts in per_epoch.items()}


def _increasing_steps(stream: Stream, epoch: int) -> bool:
    steps = [d.step for d in stream.batches if d.epoch == epoch]
    return steps == sorted(steps)


def _coverage(result: DeterminismResult, built: Built, main: Stream) -> None:
    n = built.source.n
    missing, duplicated = [], []
    for _epoch, ids in sorted(_ids_per_epoch(main).items()):
        counts = np.bincount(ids, minlength=n)
        missing.append(int((counts == 0).sum()))
        duplicated.append(int((counts > 1).sum()))
    dropped = _dropped_by_design(built, main, missing, duplicated)
    result.dropped_by_design = dropped
    result.missing_per_epoch = [m - dropped for m in missing]
    result.duplicated_per_epoch = duplicated
    result.missing = sum(result.missing_per_epoch)
    result.duplicated = sum(duplicated)


def _dropped_by_design(built: Built, main: Stream, missing: list[int], duplicated: list[int]) -> int:
    """An uneven last batch left out on purpose: every batch full, the remainder missing."""
    bs, n = built.spec.batch_size, built.source.n
    remainder = n % bs
    if not remainder or any(duplicated):
        return 0
    full = all(d.rows == bs for d in main.batches)
    per_epoch_batches = {d.epoch for d in main.batches}
    count_ok = all(sum(1 for d in main.batches if d.epoch == e) == n // bs for e in per_epoch_batches)
    if (built.drops_last_partial or (full and count_ok)) and all(m == remainder for m in missing):
        return remainder
    return 0


def _diversity(result: DeterminismResult, main: Stream) -> None:
    contents: dict[int, dict[int, int]] = {}  # epoch -> id -> row hash
    for digest in main.batches:
        contents.setdefault(digest.epoch, {}).update(zip(digest.ids.tolist(), digest.row_hashes.tolist()))
    epochs = sorted(contents)
    if len(epochs) < 2:
        result.reasons["epoch_diversity"] = "needs 2 or more epochs"
        return
    fractions = []
    for a, b in zip(epochs, epochs[1:]):
        shared = contents[a].keys() & contents[b].keys()
        if shared:
            fractions.append(sum(contents[a][i] != contents[b][i] for i in shared) / len(shared))
    result.epoch_diversity = float(np.mean(fractions)) if fractions else None


def _repeated_draws(result: DeterminismResult, built: Built, main: Stream) -> None:
    if built.spec.workload == "numpy":
        result.reasons["repeated_draws"] = (
            "the numpy workload transforms content, so equal random draws leave different residuals"
        )
        return
    # Same draws on the *same* samples in another epoch is frozen augmentation
    # (epoch_diversity); here only batches of different samples count.
    seen: dict[tuple[int, str], Counter] = {}
    pairs = 0
    for digest in main.batches:
        if digest.draws is None or digest.rows < MIN_ROWS_FOR_DRAWS:
            continue
        samples = _hash(np.sort(digest.ids))
        earlier = seen.setdefault((digest.rows, digest.draws), Counter())
        pairs += sum(earlier.values()) - earlier[samples]
        earlier[samples] += 1
    result.repeated_draws = pairs


def _differing(a: Stream, b: Stream) -> int:
    """Batches at the same position whose bytes differ, plus any extra batches."""
    differ = sum(x.content != y.content for x, y in zip(a.batches, b.batches))
    return differ + abs(len(a.batches) - len(b.batches))
