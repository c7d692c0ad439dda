"""The profile table: every check of the stream has a column, and a cell says what it found."""

from feedbench.measure.determinism import DeterminismFigures
from feedbench.measure.setting import SettingResult
from feedbench.report import table


def _cells(**figures):
    result = SettingResult(2, False, determinism=DeterminismFigures(**figures))
    return dict(zip([name for name, _ in table.COLUMNS], table._row(result)))


def test_aliased_buffers_wrong_inputs_and_uneven_coverage_show_in_the_table():
    flawed = _cells(aliased_batches=3, mismatched_inputs=40, coverage_spread=3, in_order=True)
    assert (flawed["aliased"], flawed["wrong x"], flawed["cover"]) == ("3", "40", "UNEVEN")
    clean = _cells(aliased_batches=0, mismatched_inputs=0, coverage_spread=1, in_order=True)
    assert (clean["aliased"], clean["wrong x"], clean["cover"]) == ("0", "0", "even")
    assert _cells()["cover"] == "-"  # whole epochs: coverage is judged per epoch


def test_an_order_the_dataset_chose_itself_is_not_shown_as_a_failure():
    assert _cells(in_order=False, shuffles_itself=True)["order"] == "own"
    assert _cells(in_order=False, shuffles_itself=False)["order"] == "NO"


def test_every_row_fills_every_column():
    assert len(table._row(SettingResult(1, False))) == len(table.COLUMNS)
    assert len(table._row(SettingResult(1, False, determinism=DeterminismFigures()))) == len(table.COLUMNS)
