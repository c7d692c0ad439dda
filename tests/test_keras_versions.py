"""The Keras releases the driver is checked on (keras_api.KERAS_RANGE), and that the tests run on the
one asked for: `bash tests/keras_range.sh` runs the driver's tests on each end of the range."""

import os

import keras
import pytest

from feedbench.fit import keras_api


def test_the_release_under_test_is_the_one_asked_for():
    expected = os.environ.get("FEEDBENCH_EXPECT_KERAS")
    if expected is None:
        pytest.skip("run by tests/keras_range.sh, which says which Keras it installed")
    assert keras.__version__ == expected  # PYTHONPATH put the asked release first
    assert keras_api.check_version() is None  # a release of the range: no warning


@pytest.mark.parametrize("version", ["3.12.0", "3.12.4", "3.13.2", "3.14.1", "3.15.1"])
def test_no_warning_inside_the_range(version):
    assert keras_api.check_version(version) is None


@pytest.mark.parametrize("version", ["3.11.3", "3.16.0", "4.0.0", "2.15.0", "3.x"])
def test_one_line_outside_the_range(version):
    warning = keras_api.check_version(version)
    assert warning is not None and "\n" not in warning
    assert f"Keras {version} is installed" in warning and "3.12 to 3.15" in warning


def test_the_range_starts_at_the_oldest_keras_the_installed_tensorflow_accepts():
    from importlib.metadata import requires

    pins = [r for r in requires("tensorflow") or [] if r.replace(" ", "").startswith("keras>=")]
    if not pins:
        pytest.skip("this TensorFlow does not pin keras")
    oldest = tuple(int(p) for p in pins[0].split(">=")[1].split(",")[0].split(".")[:2])
    assert keras_api.KERAS_RANGE[0] <= oldest  # the range covers what TensorFlow lets a user install
