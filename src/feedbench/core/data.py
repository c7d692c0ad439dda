"""Synthetic, seeded sources: image-like float32 samples with integer labels.

The task is learnable by a small model and does not change under the
augmentations feedbench uses (horizontal flips, mild noise): a sample of class
``c`` carries a brighter horizontal band at rows ``[c*H/k, (c+1)*H/k)`` in
channel ``c % 3`` on top of Gaussian noise. A left-right flip keeps the band
where it is, so the label stays true.

In *traced* mode the label array carries the sample id in a second column
(``y[:, 0]`` label, ``y[:, 1]`` id), so the determinism analysis can tell
which source sample every delivered row came from. In training mode ``y`` is
the plain label vector.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from feedbench.core import settings
from feedbench.core.errors import CacheError

SIZES: dict[str, tuple[int, int, int]] = {
    "small": (32, 32, 3),
    "large": (128, 128, 3),
}
STORAGES = ("memory", "disk")
NUM_CLASSES = 4
BAND_BRIGHTNESS = 1.0
NOISE_STD = 0.5


@dataclass
class Source:
    """Sample arrays held in memory or memory-mapped from ``.npy`` files."""

    x: np.ndarray
    labels: np.ndarray
    size: str
    seed: int
    traced: bool
    storage: str
    path: Path | None = None

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def ids(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)

    @cached_property
    def y(self) -> np.ndarray:
        """What a generator returns as targets: labels, or (label, id) rows when traced."""
        if self.traced:
            return np.stack([self.labels, self.ids], axis=1)
        return self.labels

    def __reduce__(self):
        # An on-disk source travels to a spawned worker as its file, mapped again there: cheap to open.
        if self.path is not None:
            return (_reopen, (str(self.path), self.labels, self.size, self.seed, self.traced))
        return super().__reduce__()

    def fingerprint(self) -> str:
        """Digest of the sample bytes: changes if anything wrote into the source."""
        digest = hashlib.blake2b(digest_size=16)
        for start in range(0, self.n, 256):  # chunked: memmaps stay out of RAM
            digest.update(np.ascontiguousarray(self.x[start : start + 256]).tobytes())
        return digest.hexdigest()


def _reopen(path: str, labels: np.ndarray, size: str, seed: int, traced: bool) -> Source:
    return Source(np.load(path, mmap_mode="c"), labels, size, seed, traced, "disk", Path(path))


_START_DIR = os.getcwd()  # a relative FEEDBENCH_CACHE means relative to where feedbench started


def cache_dir() -> Path:
    """Where on-disk sources live: ``$FEEDBENCH_CACHE`` or ``~/.cache/feedbench``.

    A relative path is taken from the folder feedbench started in, so a generator that changes
    the working directory does not move the cache.
    """
    return Path(_START_DIR) / (settings.current().cache or Path.home() / ".cache" / "feedbench")


def make_labels(n: int, seed: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    return np.random.default_rng([seed, 1]).integers(0, num_classes, n).astype(np.int64)


def make_samples(
    labels: np.ndarray,
    size: str,
    seed: int,
    num_classes: int = NUM_CLASSES,
    band_brightness: float = BAND_BRIGHTNESS,
    probe: bool = False,
) -> np.ndarray:
    """Noise plus one bright band per sample, placed and coloured by its label.

    ``band_brightness`` sets how hard the task is: at the default the band
    stands out plainly; the training task dims it so accuracy is not saturated.
    """
    if size not in SIZES:
        raise ValueError(f"unknown source size {size!r}; expected one of {sorted(SIZES)}")
    height, width, channels = SIZES[size]
    rng = np.random.default_rng([seed, 2])
    x = rng.standard_normal((len(labels), height, width, channels), dtype=np.float32)
    x *= NOISE_STD
    band = height // num_classes
    for c in range(num_classes):
        rows = slice(c * band, (c + 1) * band)
        x[labels == c, rows, :, c % channels] += band_brightness
    if probe:
        x[:] = x[0]
    return x


def make_source(
    size: str = "small",
    n: int = 512,
    seed: int = 0,
    traced: bool = True,
    storage: str = "memory",
    directory: Path | None = None,
    band_brightness: float = BAND_BRIGHTNESS,
    probe: bool = False,
) -> Source:
    """A deterministic source: the same (size, n, seed) always gives the same bytes.

    ``probe=True`` gives every sample the same content (sample 0's, a noisy texture, so crops,
    shifts and rotations still show) with the labels and ids of a normal source: two samples
    delivered with identical bytes were then given identical random draws.

    ``storage="disk"`` writes the samples once to a ``.npy`` file in
    :func:`cache_dir` and maps it copy-on-write (``mmap_mode="c"``): reads come
    from the file, and a generator that writes into its slices changes only its
    own process's pages, as with an in-memory array.
    """
    if n <= 0:
        raise ValueError(f"source size n={n} given; expected a positive number of samples")
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}; expected one of {list(STORAGES)}")
    labels = make_labels(n, seed)
    if storage == "memory":
        x = make_samples(labels, size, seed, band_brightness=band_brightness, probe=probe)
        return Source(x, labels, size, seed, traced, storage)
    path = _disk_file(size, n, seed, labels, directory or cache_dir(), band_brightness, probe)
    x = np.load(path, mmap_mode="c")
    return Source(x, labels, size, seed, traced, storage, path)


def _disk_file(
    size: str, n: int, seed: int, labels: np.ndarray, directory: Path, band_brightness: float, probe: bool
) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"source cache {str(directory)!r} cannot be created ({exc.strerror or exc}); expected a "
            "writable folder (set FEEDBENCH_CACHE)"
        ) from None
    band = "" if band_brightness == BAND_BRIGHTNESS else f"-band{band_brightness:g}"
    kind = "-probe" if probe else ""
    path = directory / f"source-{size}-n{n}-seed{seed}-k{NUM_CLASSES}{band}{kind}.npy"
    expected = (n, *SIZES[size])
    if path.exists():
        try:
            if np.load(path, mmap_mode="r").shape == expected:
                return path
        except (ValueError, OSError):
            pass  # a torn or foreign file: write it again
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:  # np.save on a path would append ".npy"
            np.save(handle, make_samples(labels, size, seed, band_brightness=band_brightness, probe=probe))
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a full disk must not stay full of our half-written file
        raise CacheError(
            f"source cache file {str(path)!r} cannot be written ({exc.strerror or exc}); expected a "
            "writable folder with room for it (set FEEDBENCH_CACHE)"
        ) from None
    return path
