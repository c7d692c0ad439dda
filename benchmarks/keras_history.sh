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
asv --config "$conf" machine --yes >/dev/null
# whole-epoch throughput, the stream's checks, and what a real fit delivered: the figures Keras moves
asv --config "$conf" run --show-stderr --bench 'throughput\.Throughput|determinism\.Stream|fit_stream\.FitStream' HEAD^! \
    || echo "feedbench: some benchmarks failed; see the results"
asv --config "$conf" publish
feedbench offline-html .asv/keras/html || echo "feedbench: the site needs internet access to load its scripts"
feedbench report .asv/keras/results --out .asv/keras/html/report --link-from .asv/keras/html \
    --releases docs/keras-releases.md
echo "feedbench: Keras releases published to $PWD/.asv/keras/html/index.html (report: .asv/keras/html/report/index.html)"
