"""Verdicts on real-style generators (tests/support/corpus.py): each flaw is flagged, and nothing else.

Every case names the problems that must be found (``required``; a frozenset there: at least one of
them) and the only others that may be (``allowed``: a flaw whose symptom depends on thread
scheduling, say); anything else is a false alarm and fails the test. Clean counterparts of the
same style require and allow nothing.
"""

import pytest

from feedbench.core.errors import BadDataset
from feedbench.generators import Spec, build
from feedbench.measure.setting import Context, measure_setting

pytestmark = [pytest.mark.slow]

N, BS, EPOCHS = 96, 16, 3  # 6 full batches an epoch
SERIAL, THREADS, PROCESSES = (1, False), (2, False), (2, True)
EVERY = (SERIAL, THREADS, PROCESSES)
RACES = {"reproducible", "matches_serial"}  # threads racing on one RNG: may or may not show in a run

# (factory, settings, shuffle values, required, allowed, spec overrides)
CASES = [
    # The classic Sequence: floor(n / bs) batches, np.random.shuffle in on_epoch_end, one-hot labels.
    ("support.corpus:classic", [SERIAL, PROCESSES], [False], {"never_delivered"}, set(), {"n_samples": 100}),
    # Shuffled, each epoch drops 4 other samples (missing); by chance (p ~ 0.6 % over 3 epochs) one is
    # dropped in every epoch, and never_delivered, which outranks missing, names the flaw instead.
    (
        "support.corpus:classic",
        [SERIAL, PROCESSES],
        [True],
        {"reproducible", frozenset({"missing", "never_delivered"})},
        set(),
        {"n_samples": 100},
    ),
    ("support.corpus:classic_fixed", [SERIAL, PROCESSES], [False], set(), set(), {"n_samples": 100}),
    ("support.corpus:classic_fixed", [THREADS, PROCESSES], [True], set(), set(), {"n_samples": 100}),
    # Rotation, shift and noise from NumPy's global RNG: unseeded, then seeded at import.
    ("support.corpus:global_rng_augment", [SERIAL, THREADS], [False], {"reproducible"}, set(), {}),
    (
        "support.corpus:global_rng_augment",
        [PROCESSES],
        [False],
        {"repeated_draws", "reproducible"},
        {"epoch_diversity"},
        {},
    ),
    ("support.corpus_seeded:global_rng_augment", [SERIAL], [False], set(), set(), {}),
    ("support.corpus_seeded:global_rng_augment", [THREADS], [False], set(), RACES, {}),
    (
        "support.corpus_seeded:global_rng_augment",
        [PROCESSES],
        [False],
        {"repeated_draws"},
        {"epoch_diversity"} | RACES,
        {},
    ),
    ("support.corpus:keyed_augment", EVERY, [False], set(), set(), {}),
    # An imgaug-like augmenter object holding its own seeded RandomState.
    ("support.corpus:augmenter_object", [SERIAL], [False], set(), set(), {}),
    ("support.corpus:augmenter_object", [THREADS], [False], set(), RACES, {}),
    ("support.corpus:augmenter_object", [PROCESSES], [False], {"repeated_draws"}, {"epoch_diversity"} | RACES, {}),
    # The Keras 3 migration mistake: workers never apply.
    ("support.corpus:forgot_super_kwargs", [THREADS, PROCESSES], [False], {"setting_not_applied"}, set(), {}),
    ("support.corpus:forgot_super_kwargs", [SERIAL], [False], set(), set(), {}),
    ("support.corpus:passes_super_kwargs", [PROCESSES], [False], set(), set(), {}),
    # Structures fit accepts: dict inputs, dict one-hot / shifted targets, sample weights, (x,) alone.
    ("support.corpus:structured", [SERIAL, PROCESSES], [False], set(), set(), {}),
    ("support.corpus:x_only", [SERIAL], [False], set(), set(), {}),
    # An infinite PyDataset, given its steps.
    ("support.corpus:endless", [PROCESSES], [False], set(), set(), {"steps": N // BS}),
    # Generators and tf.data (serial: Keras 3 parallelizes only PyDatasets).
    ("support.corpus:plain_generator", [SERIAL], [False], set(), set(), {}),
    ("support.corpus:tfdata_unseeded", [SERIAL], [False], {"reproducible"}, set(), {}),
    ("support.corpus:tfdata_seeded", [SERIAL], [False], set(), set(), {}),
]


# What CI runs: each kind of flaw once, beside a clean twin of its style. The other cases and
# settings are the long tier (`pytest -m long`).
IN_CI = {
    "classic-corpus-w1t-s1",
    "classic_fixed-corpus-w2p-s1",
    "global_rng_augment-corpus-w2p-s0",
    "keyed_augment-corpus-w2p-s0",
    "forgot_super_kwargs-corpus-w2p-s0",
    "passes_super_kwargs-corpus-w2p-s0",
    "tfdata_unseeded-corpus-w1t-s0",
    "tfdata_seeded-corpus-w1t-s0",
}


def _expand():
    for factory, settings, shuffles, required, allowed, extra in CASES:
        for workers, mp in settings:
            for shuffle in shuffles:
                name = f"{factory.split(':')[1]}-{factory.split(':')[0]}-w{workers}{'p' if mp else 't'}-s{int(shuffle)}"
                marks = () if name in IN_CI else pytest.mark.long
                yield pytest.param(factory, workers, mp, shuffle, required, allowed, extra, id=name, marks=marks)


@pytest.mark.parametrize("factory,workers,mp,shuffle,required,allowed,extra", list(_expand()))
def test_verdicts_on_real_style_generators(factory, workers, mp, shuffle, required, allowed, extra, no_stray_workers):
    spec = Spec(
        factory, **{"n_samples": N, "batch_size": BS, **extra}, workers=workers, use_multiprocessing=mp, shuffle=shuffle
    )
    result = measure_setting(spec, ("determinism",), Context(epochs=EPOCHS, timeout_s=60))
    assert result.error is None, result.error
    found = set(result.problems)
    choices = [need if isinstance(need, frozenset) else {need} for need in required]
    assert all(choice & found for choice in choices), f"missed one of: {choices} (found {found})"
    named = set().union(*choices, allowed)
    assert found <= named, f"false alarm: {found - named}"
    d = result.determinism
    if not named & {"never_delivered", "missing"}:
        # Coverage was measured (ids traced, or rows matched by content), not skipped.
        assert d.identified_by is not None, result.null_reasons
        assert d.missing == 0 and d.duplicated == 0


def test_labels_transformed_still_give_coverage_by_content():
    result = measure_setting(
        Spec("support.corpus:structured", n_samples=N, batch_size=BS), ("determinism",), Context(epochs=2, timeout_s=60)
    )
    assert result.determinism.identified_by == "content matching"
    assert result.determinism.never_delivered == 0


def test_an_iterator_that_is_not_a_generator_is_refused_as_keras_would():
    with pytest.raises(
        BadDataset,
        match=r"returned a ThreadSafeIter, an iterator that is not a generator: "
        r"Keras's fit does not accept it",
    ):
        build(Spec("support.corpus:threadsafe_iterator", n_samples=N, batch_size=BS))
