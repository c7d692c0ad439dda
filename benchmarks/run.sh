#!/usr/bin/env bash
# The main job: set up what is needed, run the asv suite on this commit on this
# machine, publish the HTML and say where to open it.
#   bash benchmarks/run.sh            the full grid
#   bash benchmarks/run.sh --quick    the smoke grid (FEEDBENCH_GRID=quick), each benchmark once
# The terminal gets one line per benchmark and a summary; asv's whole output goes to .asv/run.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/asv ]; then
    echo "feedbench: setting up .venv (TensorFlow, Keras, asv)"
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"   # asv and virtualenv come with it
fi
export PATH="$PWD/.venv/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2
# What the measured code writes to the temporary folder goes with this run: TensorFlow's AutoGraph
# files are removed only at a normal interpreter exit, which asv's benchmark processes never make.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/feedbench-tmp-$$-XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"
quick=()
if [ "${1:-}" = "--quick" ]; then
    export FEEDBENCH_GRID=quick
    quick=(--quick)
fi
mkdir -p .asv
log=.asv/run.log
asv machine --yes >"$log" 2>&1
echo "feedbench: asv run on $(git rev-parse --short HEAD) (${quick[*]:-full grid}); the full log: $log"
# asv's line per benchmark, not its tables nor a line per skipped parameter. A benchmark that fails
# is recorded as failed; the run goes on and the rest is published.
asv run "${quick[@]}" --show-stderr HEAD^! 2>&1 | tee -a "$log" \
    | { grep --line-buffered -E '^\[ *[0-9.]+%\] ·{2,3} [A-Za-z.][^ ]* {2,}[^ ]+$|Benchmarking' || true; } \
    || echo "feedbench: asv run ended with a failure; see $log"
asv publish >>"$log" 2>&1
# asv's pages load their libraries from CDNs; serve them locally so the site also works offline.
feedbench offline-html .asv/html >>"$log" 2>&1 || echo "feedbench: the site needs internet access to load its scripts"
# The page a person opens first (verdicts, plots, changes), linked from the top of asv's index;
# then what ran, failed and was n/a, each n/a reason once.
echo
feedbench report .asv/results --out .asv/html/report --link-from .asv/html --log "$log" || echo "feedbench: no report page"
echo
echo "feedbench: results published to $PWD/.asv/html/index.html (report: $PWD/.asv/html/report/index.html)"
echo "feedbench: view them with: .venv/bin/asv preview   (serves .asv/html on http://127.0.0.1:8080)"
