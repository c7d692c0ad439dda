#!/usr/bin/env bash
# What `fit` gets from each feeder on a GPU, per Keras backend: `shm` against Keras's own pools,
# torch's DataLoader and the ceiling (the same model fed one prepared batch), under fit(shuffle=False)
# and fit(shuffle=True), and on jax with shm's device hand-off on and off.
#
#   bash benchmarks/gpu_fit.sh OUT_DIR [BACKEND ...]      (backends: torch jax by default)
#
# Each step is one `feedbench fit` command (2048 images of 128x128x3, batches of 64, a pure-Python
# workload of 12,000 loop iterations per sample, 3 epochs, the first one dropped); its figures go to
# OUT_DIR/BACKEND-WORKLOAD-STEP.json (a file left from before is removed first), and the table at the
# end is read from those files. A step that fails says so and the others go on. Needs a GPU that
# nvidia-smi lists.
set -u
out=${1:?usage: bash benchmarks/gpu_fit.sh OUT_DIR [BACKEND ...]}
shift
backends=${*:-torch jax}
python=${PYTHON:-python3}
mkdir -p "$out"
# shm's own processes need use_multiprocessing on (off: Keras's threads run keyed's code).
# ONLY=REGEX runs the steps whose name matches; WORKLOAD=copy drops the per-batch work (the consumer
# side alone). SAMPLES and DEVICE change the task (a short trial on a CPU: SAMPLES=256 DEVICE=cpu).
common=(--size large --samples "${SAMPLES:-2048}" --batch-size 64 --workload "${WORKLOAD:-python}" --python-iters 12000
        --epochs 3 --seeds 1 --device "${DEVICE:-gpu}" --timeout 150)

step() {  # step BACKEND NAME [ENV=VALUE ...] -- feedbench fit arguments
    local backend=$1 name=$2
    shift 2
    [[ $name =~ ${ONLY:-.} ]] || return 0
    local json="$out/$backend-${WORKLOAD:-python}-$name.json"
    rm -f "$json"
    local env=()
    while [ "$1" != "--" ]; do env+=("$1"); shift; done
    shift
    echo "== $backend $name: feedbench fit $* (${env[*]:-})" >&2
    env ${env[@]+"${env[@]}"} KERAS_BACKEND="$backend" "$python" -m feedbench.cli fit "$@" "${common[@]}" \
        --json "$json" || echo "== $backend $name failed (exit $?)" >&2
}

for backend in $backends; do
    step "$backend" shm -- shm --grid-workers 8 --grid-multiprocessing on --fit-shuffle off
    step "$backend" shm_fit_shuffle -- shm --grid-workers 8 --grid-multiprocessing on --fit-shuffle on
    if [ "$backend" = jax ]; then
        step "$backend" shm_no_hand_off FEEDBENCH_SHM_HAND_OFF=off -- shm --grid-workers 8 \
            --grid-multiprocessing on --fit-shuffle off
    fi
    step "$backend" keyed -- keyed --grid-workers 8 --grid-multiprocessing both --fit-shuffle off
    step "$backend" torch_dataloader -- torch_dataloader --grid-workers 8 --grid-multiprocessing on
done

"$python" - "$out" <<'EOF'
import glob, json, os, sys

print("| backend | workload | feeder | setting | fit samples/s | ceiling | fit ÷ ceiling | fit(x, y) arrays |")
print("|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*-*-*.json"))):
    backend, workload, name = os.path.basename(path)[:-5].split("-", 2)
    for s in json.load(open(path))["settings"]:
        setting = f"workers={s['workers']} use_multiprocessing={'on' if s['use_multiprocessing'] else 'off'}"
        t = s.get("training")
        if not t:
            print(f"| {backend} | {workload} | {name} | {setting} | {s.get('error') or s.get('skipped')} | | | |")
            continue
        fit, ceiling = t["fit_samples_per_s"], t["ceiling_samples_per_s"]
        print(f"| {backend} | {workload} | {name} | {setting} | {fit:,.0f} | {ceiling:,.0f} | "
              f"{fit / ceiling:.2f} | {t['baseline_samples_per_s']:,.0f} |")
EOF
