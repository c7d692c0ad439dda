import numpy as np
import pytest

from feedbench.core.data import NUM_CLASSES, SIZES, make_source


def test_same_seed_same_bytes_other_seed_other_bytes():
    a, b, c = make_source(n=64, seed=3), make_source(n=64, seed=3), make_source(n=64, seed=4)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_sizes_shapes_and_dtypes(size):
    source = make_source(size, n=8)
    assert source.x.shape == (8, *SIZES[size])
    assert source.x.dtype == np.float32
    assert source.labels.dtype == np.int64
    assert set(np.unique(make_source(size, n=200).labels)) == set(range(NUM_CLASSES))


def test_traced_labels_carry_sample_ids_training_labels_do_not():
    traced, plain = make_source(n=50, traced=True), make_source(n=50, traced=False)
    assert traced.y.shape == (50, 2)
    np.testing.assert_array_equal(traced.y[:, 0], traced.labels)
    np.testing.assert_array_equal(traced.y[:, 1], np.arange(50))
    np.testing.assert_array_equal(plain.y, plain.labels)


def test_label_band_survives_a_horizontal_flip():
    source = make_source(n=400, seed=1)
    height = source.x.shape[1]
    band = height // NUM_CLASSES
    flipped = source.x[:, :, ::-1]
    for images in (source.x, flipped):
        row_means = images.mean(axis=(2, 3))  # (n, H)
        bands = row_means[:, : band * NUM_CLASSES].reshape(len(images), NUM_CLASSES, band).mean(axis=2)
        # the brightest band names the class for nearly every sample
        assert (bands.argmax(axis=1) == source.labels).mean() > 0.95


def test_disk_source_equals_memory_and_writes_stay_private(tmp_path):
    memory = make_source(n=40, seed=2)
    disk = make_source(n=40, seed=2, storage="disk", directory=tmp_path)
    assert disk.storage == "disk" and disk.path.exists()
    np.testing.assert_array_equal(np.asarray(disk.x), memory.x)
    disk.x[0] = 0.0  # copy-on-write: this process only
    again = make_source(n=40, seed=2, storage="disk", directory=tmp_path)
    np.testing.assert_array_equal(np.asarray(again.x[0]), memory.x[0])


def test_bad_source_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="unknown source size 'huge'"):
        make_source("huge")
    with pytest.raises(ValueError, match="n=0"):
        make_source(n=0)
    with pytest.raises(ValueError, match="unknown storage 'tape'"):
        make_source(storage="tape")
