"""``feedbench findings``: the popular answers about Sequence accuracy, measured.

``measure()`` runs every measurement the findings rest on (stream
determinism and memory through :mod:`feedbench.sweep`, training runs with
seed repeats, real ``fit`` streams on each installed backend and on legacy
Keras 2) and returns plain JSON. ``render()`` turns stored results into
``docs/FINDINGS.md``: every figure in it comes from those results, and every
verdict is computed from them, never typed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

from feedbench.data import NUM_CLASSES
from feedbench.generators import Spec

SETTINGS = [(1, False), (2, False), (2, True)]
STREAM_IMPLS = ("seed_unseeded", "seed_reseeded", "seed_bounded", "numpy_global", "keyed")
TRAIN_IMPLS = STREAM_IMPLS
N, BATCH = 1000, 64  # 16 batches, the last one uneven (40 samples)
EPOCHS = 3
TIMEOUT_S = 60.0
SEEDS = 3
BACKENDS = ("tensorflow", "jax", "torch")
ASV_SITE = "../.asv/html/index.html"


def key(impl: str, workers: int, mp: bool, shuffle: bool = False) -> str:
    return f"{impl}|{workers}|{int(mp)}|{int(shuffle)}"


def _setting(workers: int, mp: bool) -> str:
    if workers == 1 and not mp:
        return "serial"
    return f"{workers} {'processes' if mp else 'threads'}" if workers > 1 else "1 process"


# --------------------------------------------------------------------------- measuring


def measure(progress=print) -> dict:
    from feedbench import sweep, train

    import keras

    results = {
        "machine": platform.node(),
        "cores": os.cpu_count(),
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": train.current_device(),
    }
    stream_keys, stream_specs = [], []
    for impl in STREAM_IMPLS:
        for workers, mp in SETTINGS:
            stream_keys.append(key(impl, workers, mp))
            stream_specs.append(Spec(impl, n_samples=N, batch_size=BATCH, workers=workers, use_multiprocessing=mp))
    for impl in ("seed_bounded", "keyed"):  # shuffling: fit's global `random` against keyed planning
        stream_keys.append(key(impl, 1, False, True))
        stream_specs.append(Spec(impl, n_samples=N, batch_size=BATCH, shuffle=True))
    progress(f"stream and memory: {len(stream_specs)} settings ...")
    records = sweep.sweep(stream_specs, ("memory", "determinism"), EPOCHS, TIMEOUT_S)
    results["stream"] = dict(zip(stream_keys, records))

    task = train.Task()
    train_keys, train_specs = [], []
    for impl in TRAIN_IMPLS:
        for workers, mp in SETTINGS:
            train_keys.append(key(impl, workers, mp, True))
            train_specs.append(task.spec(impl, workers=workers, use_multiprocessing=mp))
    progress(f"training: {len(train_specs)} settings x {SEEDS} seeds ...")
    records = sweep.sweep(train_specs, ("training",), task.epochs, TIMEOUT_S, seeds=SEEDS)
    results["training"] = dict(zip(train_keys, records))

    progress("preprocessing: training standardized and blurred, validation with and without it ...")
    numpy_spec = task.spec("keyed", workload="numpy")
    results["preprocessing"] = {
        "consistent": train.measure_training(numpy_spec, task.epochs, SEEDS, TIMEOUT_S).summary(),
        "inconsistent": train.measure_training(numpy_spec, task.epochs, SEEDS, TIMEOUT_S,
                                               preprocess_validation=False).summary(),
    }
    results["task"] = {"n_train": task.n_train, "n_val": task.n_val, "epochs": task.epochs,
                       "band_brightness": task.band_brightness, "seeds": SEEDS}

    results["backends"] = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        progress(f"real fit streams on Keras backend {backend} ...")
        results["backends"][backend] = _backend_streams(backend)

    from feedbench import legacy

    results["legacy"] = {}
    if legacy.available():
        for kind, workers, mp in [("sequence", 2, True), ("generator", 1, False), ("generator", 2, True)]:
            progress(f"legacy Keras 2: {kind}, workers={workers}, use_multiprocessing={mp} ...")
            try:
                run = legacy.legacy_stream(kind, workers, mp, epochs=2, timeout_s=120)
                results["legacy"][key(kind, workers, mp)] = {k: v for k, v in run.items() if k != "ids"}
            except Exception as exc:  # a failing setting is a result too
                results["legacy"][key(kind, workers, mp)] = {"error": str(exc).splitlines()[0]}
    return results


BACKEND_CASES = [("keyed", 1, False), ("keyed", 2, True)]


def _backend_streams(backend: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "feedbench.findings", "--backend-streams"], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"status {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure_backend_streams() -> dict:
    from feedbench import tap
    from feedbench.generators import build

    out = {}
    for impl, workers, mp in BACKEND_CASES:
        spec = Spec(impl, n_samples=100, batch_size=16, shuffle=True, workers=workers, use_multiprocessing=mp)
        out[key(impl, workers, mp, True)] = tap.fit_stream(build(spec), epochs=2, timeout_s=TIMEOUT_S).summary(100)
    return out


# --------------------------------------------------------------------------- rendering


def _bench(name: str, **params) -> str:
    """A benchmark's name as asv shows it, with a link to its graph in the published site."""
    chosen = ", ".join(f"{k}={v}" for k, v in params.items())
    query = "&".join(f"p-{k}=%27{v}%27" for k, v in params.items())
    return f"[`{name}`]({ASV_SITE}#{name}{'?' + query if query else ''}) ({chosen})"


def _d(results, impl, workers, mp, shuffle=False) -> dict:
    record = results["stream"].get(key(impl, workers, mp, shuffle)) or {}
    return record.get("determinism") or {}


def _m(results, impl, workers, mp) -> dict:
    record = results["stream"].get(key(impl, workers, mp)) or {}
    return record.get("memory") or {}


def _t(results, impl, workers, mp) -> dict:
    record = results["training"].get(key(impl, workers, mp, True)) or {}
    return record.get("training") or {"error": record.get("error") or "not measured"}


def _acc(t: dict) -> str:
    if "error" in t:
        return f"failed: {t['error']}"
    return (f"{t['val_accuracy']:.3f} ± {t['val_accuracy_spread']:.3f}, vs baseline {t['accuracy_vs_baseline']:+.3f} "
            f"(noise ±{t['accuracy_noise']:.3f}): {t['accuracy_verdict']}")


def _accuracy_table(results, impls) -> list[str]:
    lines = ["| implementation | setting | validation accuracy (mean ± sd over seeds) | fit samples/s | starvation |",
             "|---|---|---|---|---|"]
    for impl in impls:
        for workers, mp in SETTINGS:
            t = _t(results, impl, workers, mp)
            speed = "-" if "error" in t else f"{t['fit_samples_per_s']:.0f}"
            starve = "-" if "error" in t else f"{t['starvation']:.2f}"
            lines.append(f"| {impl} | {_setting(workers, mp)} | {_acc(t)} | {speed} | {starve} |")
    return lines


def _verdict_accuracy(results, impl) -> tuple[str, list[str]]:
    verdicts = {}
    for workers, mp in SETTINGS:
        t = _t(results, impl, workers, mp)
        verdicts[_setting(workers, mp)] = t.get("accuracy_verdict", "failed")
    lower = [s for s, v in verdicts.items() if v == "lower than baseline"]
    measured = [s for s, v in verdicts.items() if v != "failed"]
    if not measured:
        return "not measured", []
    if not lower:
        return "refuted", measured
    if len(lower) == len(measured):
        return "confirmed", lower
    return "depends", lower


def render(results: dict) -> str:
    r = results
    base = next((t for t in (_t(r, "keyed", 1, False),) if "error" not in t), {})
    out = [
        "# Findings: does a data generator cost accuracy?",
        "",
        f"Generated by `feedbench findings` on `{r['machine']}` ({r['cores']} cores, {r['device']}), {r['when']}, "
        f"Keras {r['keras']} on the {r['backend']} backend. Do not edit by hand: run the command again "
        "(`feedbench findings --from docs/findings.json` re-renders the stored measurements).",
        "",
        f"Streams: {N} samples in batches of {BATCH} (the last one uneven: {N % BATCH}), {EPOCHS} epochs, "
        f"settings serial / 2 threads / 2 processes. Training: the task of `feedbench.train` "
        f"({r['task']['n_train']} training, {r['task']['n_val']} validation samples, band brightness "
        f"{r['task']['band_brightness']}, {r['task']['epochs']} epochs, shuffle on), {r['task']['seeds']} seeds; each "
        "seed's run starts from the same weights as its baseline, `model.fit(x, y)` on the same arrays in memory"
        + (f" (baseline accuracy {base['baseline_val_accuracy']:.3f} ± {base['baseline_val_accuracy_spread']:.3f}; "
           f"chance is {1 / NUM_CLASSES:g})." if base else "."),
        "A setting that failed says why: the seed patterns run TensorFlow ops in `__getitem__`, and in forked "
        "workers those can deadlock; the run then ends at its time limit.",
        "A difference counts only beyond the noise: two standard errors of the per-seed paired differences.",
        "",
        "## Accuracy, every implementation and setting",
        "",
        *_accuracy_table(r, TRAIN_IMPLS),
        "",
        "Benchmarks: " + _bench("training.Training.track_accuracy_vs_baseline", device="cpu") + ", "
        + _bench("training.Training.track_starvation", device="cpu") + ".",
        "",
        "## The popular answers",
        "",
    ]
    out += _claim_unseeded(r) + _claim_reseed(r) + _claim_preprocessing(r) + _claim_uneven(r) + _claim_memory(r)
    out += ["## What the popular answer does not say", ""]
    out += _finding_numpy_rng(r) + _finding_views(r) + _finding_hooks(r) + _finding_shuffle(r) + _finding_dropped(r)
    return "\n".join(out) + "\n"


def _claim(title, claim, verdict, measured, bench) -> list[str]:
    return [f"### {title}", "", f"*Claim:* {claim}", "", f"**Verdict: {verdict}.**", "", *measured, "",
            f"Shown by {bench}.", ""]


def _claim_unseeded(r) -> list[str]:
    verdict, where = _verdict_accuracy(r, "seed_unseeded")
    d_serial, d_proc = _d(r, "seed_unseeded", 1, False), _d(r, "seed_unseeded", 2, True)
    measured = [
        "- `seed_unseeded` (unseeded `tf.image.random_flip_left_right`): " + "; ".join(
            f"{_setting(w, mp)}: {_acc(_t(r, 'seed_unseeded', w, mp))}" for w, mp in SETTINGS) + ".",
        f"- Its stream is not reproducible (serial: reproducible = {d_serial.get('reproducible')}), and differs from "
        f"the serial stream under 2 processes (matches_serial = {d_proc.get('matches_serial')}); the flips preserve "
        "the labels, so the model learns the same task.",
    ]
    text = {"refuted": "refuted: unseeded augmentation costs no accuracy beyond seed noise",
            "confirmed": "confirmed in every setting", "depends": f"depends: lower under {', '.join(where)}"}
    return _claim("Unseeded augmentation", "augmentation without a seed makes a Sequence lose accuracy.",
                  text.get(verdict, verdict), measured,
                  _bench("training.Training.track_accuracy_vs_baseline", implementation="seed_unseeded"))


def _claim_reseed(r) -> list[str]:
    d = _d(r, "seed_reseeded", 1, False)
    d_threads = _d(r, "seed_reseeded", 2, False)
    frozen = (d.get("repeated_draws") or 0) > 0
    verdict, _ = _verdict_accuracy(r, "seed_reseeded")
    measured = [
        f"- `seed_reseeded` (`tf.random.set_seed(42)` at the top of every `__getitem__`), serial: repeated draws "
        f"{d.get('repeated_draws')} (batches that received the identical augmentation), reproducible = "
        f"{d.get('reproducible')}; under 2 threads reproducible = {d_threads.get('reproducible')}. Epoch diversity "
        f"{d.get('epoch_diversity')} (share of samples whose content changes between epochs) is not 0 only "
        "because the flips are written back into the source: each epoch flips the last epoch's flipped samples "
        "again.",
        "- Accuracy: " + "; ".join(f"{_setting(w, mp)}: {_acc(_t(r, 'seed_reseeded', w, mp))}" for w, mp in SETTINGS)
        + ".",
    ]
    accuracy = {"refuted": "unchanged", "confirmed": "lower in every setting", "depends": "lower in some settings"}
    text = ("refuted as a fix: every batch gets the same flips" if frozen else "augmentation still varies") + \
        f", and the accuracy is {accuracy.get(verdict, verdict)}"
    return _claim("Reset the seed in every batch", "calling `tf.random.set_seed` in every `__getitem__` makes "
                  "augmentation consistent and restores accuracy.", text, measured,
                  _bench("determinism.Stream.track_epoch_diversity", implementation="seed_reseeded") + " and " +
                  _bench("determinism.Stream.track_repeated_draws", implementation="seed_reseeded"))


def _claim_preprocessing(r) -> list[str]:
    p = r["preprocessing"]
    gap = p["inconsistent"]["val_accuracy"] - p["consistent"]["val_accuracy"]
    noise = max(p["inconsistent"]["accuracy_noise"], p["consistent"]["accuracy_noise"])
    verdict = "confirmed" if gap < -noise else "refuted"
    measured = [
        f"- `keyed` with the `numpy` workload (each batch standardized and blurred in `__getitem__`), validated on "
        f"arrays given the same preprocessing: {p['consistent']['val_accuracy']:.3f} ± "
        f"{p['consistent']['val_accuracy_spread']:.3f}; validated on raw arrays: "
        f"{p['inconsistent']['val_accuracy']:.3f} ± {p['inconsistent']['val_accuracy_spread']:.3f} "
        f"(difference {gap:+.3f}).",
    ]
    text = (f"confirmed: preprocessing only the generator's batches costs {-gap:.3f} accuracy"
            if verdict == "confirmed" else "refuted here: the difference is within seed noise")
    return _claim("Inconsistent preprocessing", "the generator preprocesses differently from the data the model "
                  "is evaluated on.", text, measured, "`tests/test_findings.py` (no asv benchmark: it is a "
                  "property of the user's validation data, not of the generator)")


def _claim_uneven(r) -> list[str]:
    d = _d(r, "seed_bounded", 1, False)
    verdict, _ = _verdict_accuracy(r, "seed_bounded")
    measured = [
        f"- `seed_bounded` (slice end `min((idx + 1) * bs, n)`), {N} samples in batches of {BATCH}: missing "
        f"{d.get('missing')}, duplicated {d.get('duplicated')} per epoch; NumPy clips `x[a:b]` at the end of "
        "the array, so the `min()` changes nothing (`tests/test_implementations.py` compares it with plain "
        "slicing).",
        "- Accuracy: " + "; ".join(f"{_setting(w, mp)}: {_acc(_t(r, 'seed_bounded', w, mp))}" for w, mp in SETTINGS)
        + ".",
    ]
    ok = d.get("missing") == 0 and d.get("duplicated") == 0 and verdict == "refuted"
    return _claim("Uneven last batch", "an uneven last batch loses or repeats samples unless the slice end is "
                  "bounded with `min()`.", "refuted: no sample is lost or repeated, and the fix is a no-op" if ok
                  else "not refuted: see the figures", measured,
                  _bench("determinism.Stream.track_missing", implementation="seed_bounded"))


def _claim_memory(r) -> list[str]:
    rows = {_setting(w, mp): _d(r, "seed_unseeded", w, mp).get("source_rows_changed") for w, mp in SETTINGS}
    mem = {_setting(w, mp): _m(r, "seed_unseeded", w, mp) for w, mp in SETTINGS}
    measured = [
        "- `seed_unseeded` assigns each flipped sample back into `x[a:b]`, a view of the source. Source rows "
        "changed after the run: " + ", ".join(f"{s}: {v}" for s, v in rows.items()) + f" (of {N}).",
        "- Peak memory of the whole process tree (USS): " + ", ".join(
            f"{s}: {m.get('peak_tree_uss_bytes', 0) / 2**20:.0f} MiB ({m.get('workers_seen')} worker processes "
            "seen)" for s, m in mem.items()) + ".",
    ]
    serial, procs = rows.get("serial") or 0, rows.get("2 processes") or 0
    text = ("depends: on threads or serially the writes land in the source itself (every epoch augments the "
            "already-augmented data); in worker processes they land in the worker's copy, except the batches "
            "the TensorFlow adapter reads in the main process" if serial > procs else "see the figures")
    return _claim("Memory handling inside `__getitem__`", "how `__getitem__` slices and modifies the arrays "
                  "changes what the model sees.", text, measured,
                  _bench("determinism.Stream.track_source_rows_changed", implementation="seed_unseeded"))


def _finding(title, lines, bench) -> list[str]:
    return [f"### {title}", "", *lines, "", f"Shown by {bench}.", ""]


def _finding_numpy_rng(r) -> list[str]:
    lines = ["`numpy_global` draws flips and brightness from `np.random`. " + "; ".join(
        f"{_setting(w, mp)}: repeated draws {_d(r, 'numpy_global', w, mp).get('repeated_draws')}, epoch diversity "
        f"{_d(r, 'numpy_global', w, mp).get('epoch_diversity')}" for w, mp in SETTINGS) + ".",
        "", "Forked workers start from a copy of the parent's RNG state, and Keras forks a fresh pool from the same "
        "state every epoch (workers seen over " + f"{EPOCHS} epochs with 2 processes: "
        f"{_m(r, 'numpy_global', 2, True).get('workers_seen')}): the workers repeat each other's draws, and a single "
        "worker repeats its own every epoch."]
    return _finding("Forked workers share one NumPy RNG state", lines,
                    _bench("determinism.Stream.track_repeated_draws", implementation="numpy_global"))


def _finding_views(r) -> list[str]:
    lines = ["Source rows changed by `seed_unseeded`: " + ", ".join(
        f"{_setting(w, mp)}: {_d(r, 'seed_unseeded', w, mp).get('source_rows_changed')}" for w, mp in SETTINGS)
        + f" of {N}. Under processes the count is not 0: TensorFlow's adapter reads batches 0 and 1 in the main "
        f"process to infer the tensor spec ({2 * BATCH} rows), and those writes persist."]
    return _finding("Writes through views: threads and processes differ", lines,
                    _bench("determinism.Stream.track_source_rows_changed", implementation="seed_unseeded"))


def _finding_hooks(r) -> list[str]:
    lines = []
    for backend, streams in r["backends"].items():
        run = streams.get(key("keyed", 2, True, True)) if "error" not in streams else None
        if run:
            lines.append(f"- {backend}: 2 epochs, `on_epoch_begin` called {run['hooks'].get('on_epoch_begin')} "
                         f"times, `on_epoch_end` {run['hooks'].get('on_epoch_end')} times.")
        else:
            lines.append(f"- {backend}: failed: {streams.get('error')}")
    legacy_seq = r["legacy"].get(key("sequence", 2, True), {})
    if legacy_seq.get("hooks"):
        lines.append(f"- legacy Keras 2 (Sequence, 2 processes): `on_epoch_end` {legacy_seq['hooks'].get('on_epoch_end')}"
                     " times, called from the enqueuer's thread, which races fit's stop: the count varies from run "
                     "to run.")
    lines += ["", "Every backend calls `on_epoch_end` once before the first epoch: a dataset that reshuffles there "
              "starts training on its second order. jax and torch also call `on_epoch_begin` one extra time, for the "
              "batch they build the model on."]
    return _finding("The extra `on_epoch_end` (and `on_epoch_begin`)", lines,
                    _bench("fit_stream.FitStream.track_on_epoch_end_calls", implementation="keyed") + " and " +
                    _bench("fit_stream.FitStream.track_on_epoch_begin_calls", implementation="keyed") +
                    " (a real `fit` with a tap model; run the suite per backend), and `tests/test_fit_stream.py`")


def _finding_shuffle(r) -> list[str]:
    bounded, keyed = _d(r, "seed_bounded", 1, False, True), _d(r, "keyed", 1, False, True)
    lines = [f"With `shuffle=True`, serially: `seed_bounded` (shuffled by `fit`) reproducible = "
             f"{bounded.get('reproducible')}; `keyed` (plans its own order from (seed, epoch)) reproducible = "
             f"{keyed.get('reproducible')}. `fit(shuffle=True)` on a PyDataset shuffles the *batch order* with Python's "
             "global `random`, which `keras.utils.set_random_seed` seeds but nothing else does; it never mixes samples "
             "between batches."]
    return _finding("Shuffling", lines, _bench("determinism.Stream.track_batches_differing_from_repeat",
                                               implementation="seed_bounded"))


def _finding_dropped(r) -> list[str]:
    lines = []
    for backend, streams in r["backends"].items():
        run = streams.get(key("keyed", 2, True, True)) if "error" not in streams else None
        if run:
            per = ", ".join(f"missing {e['missing']} / duplicated {e['duplicated']}" for e in run["epochs"])
            lines.append(f"- {backend}, `keyed` shuffled, 2 processes, real `fit`: {per} (of 100, per epoch).")
    gen = r["legacy"].get(key("generator", 2, True), {})
    if gen.get("epochs"):
        per = ", ".join(f"missing {e['missing']} / duplicated {e['duplicated']}" for e in gen["epochs"])
        lines.append(f"- legacy Keras 2, a Python generator with `workers=2, use_multiprocessing=True`: {per} "
                     "(of 160, per epoch): each worker process runs its own copy of the generator.")
    lines += ["", "On jax and torch, `fit` builds the model on one batch taken from the worker pool, and that pool "
              "goes on feeding: every epoch is batches 1.. of the dataset's epoch plus batch 0 of the next one. "
              "Unshuffled, this goes unnoticed (every id still appears once); shuffled, samples go missing and "
              "repeat within each epoch. TensorFlow delivers every sample once."]
    return _finding("Dropped and repeated samples", lines,
                    _bench("fit_stream.FitStream.track_duplicated", implementation="keyed", use_multiprocessing=True)
                    + " (with `KERAS_BACKEND=jax` or `torch` in the asv matrix), and `tests/test_fit_stream.py`")


# --------------------------------------------------------------------------- entry points


def write(results: dict, markdown_path: str, json_path: str | None) -> None:
    os.makedirs(os.path.dirname(markdown_path) or ".", exist_ok=True)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(results, handle, indent=1)
    with open(markdown_path, "w") as handle:
        handle.write(render(results))


if __name__ == "__main__" and sys.argv[1:] == ["--backend-streams"]:
    print(json.dumps(_measure_backend_streams()))
