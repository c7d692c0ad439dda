#!/usr/bin/env bash
# Keras's history as a published record: this commit of feedbench, the suite's reference PyDatasets
# (keyed, numpy_global, the plain generator) on the quick grid, once per Keras release of
# asv.keras.conf.json (TensorFlow pinned); published as HTML with feedbench's report page (a column
# per release), and the releases side by side in docs/keras-releases.md.
#   bash benchmarks/keras_history.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/asv ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
fi
export PATH="$PWD/.venv/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2
export FEEDBENCH_GRID=quick FEEDBENCH_IMPLEMENTATIONS="${FEEDBENCH_IMPLEMENTATIONS:-keyed,numpy_global,generator}"
# what the measured code leaves in the temporary folder goes with this run (benchmarks/run.sh says why)
scratch="$(mktemp -d "${TMPDIR:-/tmp}/feedbench-tmp-$$-XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"
conf=asv.keras.conf.json
mkdir -p .asv/keras
log=.asv/keras/run.log
asv --config "$conf" machine --yes >"$log" 2>&1
echo "feedbench: asv run of $(git rev-parse --short HEAD) once per Keras release; the full log: $log"
# whole-epoch throughput, the stream's checks, and what a real fit delivered: the figures Keras moves
asv --config "$conf" run --show-stderr --bench 'throughput\.Throughput|determinism\.Stream|fit_stream\.FitStream' HEAD^! 2>&1 \
    | tee -a "$log" | { grep --line-buffered -E '^\[ *[0-9.]+%\] ·{2,3} [A-Za-z.][^ ]* {2,}[^ ]+$|Benchmarking' || true; } \
    || echo "feedbench: asv run ended with a failure; see $log"
asv --config "$conf" publish >>"$log" 2>&1
feedbench offline-html .asv/keras/html >>"$log" 2>&1 || echo "feedbench: the site needs internet access to load its scripts"
echo
feedbench report .asv/keras/results --out .asv/keras/html/report --link-from .asv/keras/html \
    --releases docs/keras-releases.md --log "$log"
echo "feedbench: Keras releases published to $PWD/.asv/keras/html/index.html (report: .asv/keras/html/report/index.html)"
