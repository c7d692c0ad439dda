#!/usr/bin/env bash
# The tests that pin the driver to a real model.fit (fit's call order, the fork-hazard check, the
# worker pools' clean-up), run on each given Keras release, installed beside the project's own:
#
#   bash tests/keras_range.sh                 the oldest and the newest of KERAS_RANGE
#   bash tests/keras_range.sh 3.13.2 3.14.1   those releases
#
# Each release goes to a throwaway folder put first on PYTHONPATH (the measuring child processes
# inherit it), so the project's environment is left as it is. Written up in docs/keras-versions.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
tests=(tests/test_drive.py tests/test_fit_stream.py tests/test_fork_hazard.py)
src="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's feedbench, whatever is installed
if [ $# -eq 0 ]; then
    ends=$(PYTHONPATH="$src" "$python" -c "from feedbench.fit.keras_api import KERAS_RANGE as r; print(*(f'{a}.{b}' for a, b in r))") \
        || { echo "keras_range.sh: could not read KERAS_RANGE with $python; expected the project's environment" >&2; exit 2; }
    set -- $ends
fi
status=0
for release in "$@"; do
    folder=$(mktemp -d -t feedbench-keras-XXXXXX)
    trap 'rm -rf "$folder"' EXIT
    spec="keras==$release"
    case "$release" in *.*.*) ;; *) spec="keras~=$release.0" ;; esac  # 3.12: its newest patch
    "$python" -m pip install -q --no-deps --target "$folder" "$spec"
    path="$folder:$src"
    found=$(PYTHONPATH="$path" "$python" -c "import keras; print(keras.__version__)" 2>/dev/null)
    echo "== Keras $found (asked: $release)"
    PYTHONPATH="$path" FEEDBENCH_EXPECT_KERAS="$found" "$python" -m pytest -q -p no:cacheprovider \
        "${tests[@]}" tests/test_keras_versions.py || status=1
    rm -rf "$folder"
done
exit $status
