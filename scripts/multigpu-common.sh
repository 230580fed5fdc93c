# Shared by scripts/device-multigpu-pp.sh and device-multigpu-ep.sh (sourced, after the script sets
# default_sections): arguments, the GPU count, the time budget, the dry-run switch, and the helpers that run and
# summarize one launch.
out=${1:-/tmp/out}; mkdir -p "$out"; shift || true
sections=" ${*:-$default_sections} "
want() { [[ "$sections" == *" $1 "* ]]; }
M=${M:-/tmp/g/bin/megatron}
dry=${DRY_RUN:-0}
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
budget=${TIME_BUDGET:-540}
# Seconds one run may take (a dry run on a CPU takes minutes).
run_timeout=${RUN_TIMEOUT:-150}
export NCCL_NVLS_ENABLE=0
started=$(date +%s)
echo "== $gpus GPUs ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)), budget ${budget}s, dry run: $dry"

# launch N: the launcher prefix for N ranks (thread ranks with the NCCL order check in a dry run).
launch() {
    if [ "$dry" = 1 ]; then echo "$M launch --check-nccl-order --nproc-per-node $1 --"; else echo "$M launch --nproc-per-node $1 --"; fi
}
# in_budget NAME: whether a run may still start; says so when it may not.
in_budget() {
    local used=$(( $(date +%s) - started ))
    if [ "$used" -ge "$budget" ]; then echo "skipped (time budget, ${used}s used): $1"; return 1; fi
}
# verdict LOG: in a dry run, the NCCL order check's verdict on the run (launch prints it, or why it failed).
verdict() {
    [ "$dry" = 1 ] || return 0
    grep -hE "NCCL order check" "$1" | sed 's/^> launch: /    /; s/^launch: /    /' | cut -c1-200
}
iterations() { if [ "$dry" = 1 ]; then echo "--warmup 0 --iterations 1"; else echo "--warmup 2 --iterations 4"; fi; }

# bench_run NAME RANKS FLAGS...: one `bench train` (under launch for several ranks) into $out/bench-NAME.log;
# sets bench_log, bench_line (its bench: line) and bench_started; returns 1 when skipped or failed (saying why).
bench_run() {
    local name=$1 ranks=$2; shift 2
    in_budget "$name" || return 1
    bench_log="$out/bench-${name// /_}.log"; bench_started=$(date +%s)
    local command=$M
    [ "$ranks" -gt 1 ] && command=$(launch "$ranks")
    timeout "$run_timeout" $command bench train $(iterations) "$@" > "$bench_log" 2>&1
    local rc=$?
    bench_line=$(grep "^bench:" "$bench_log" | tail -1)
    if [ -z "$bench_line" ]; then
        echo "$name: FAILED rc=$rc after $(( $(date +%s) - bench_started ))s: $(grep -iE "error|fail|refus|out of memory" "$bench_log" | head -2 | tr '\n' ' ')"
        return 1
    fi
}

# losses LOG: the lm loss of every logged iteration, one per line.
losses() { grep -o "lm loss: [0-9.E+-]*" "$1" | awk '{ print $3 }'; }
# compare NAME LOSSES REFERENCE_LOSSES: the largest relative difference over the lines both files have.
compare() {
    local n=$(wc -l < "$2")
    paste "$2" "$3" | awk -v name="$1" -v n="$n" '
        { d = ($1 - $2) / $2; if (d < 0) d = -d; if (d > max) max = d; last = $1; ref = $2 }
        END { printf "  %-28s %d iterations, max relative difference %.2e (last %s vs %s)\n", name, n, max, last, ref }'
}
# compare_logs NAME LOG REFERENCE_LOG: `compare` of two runs' logged losses, or what went wrong.
compare_logs() {
    losses "$2" > "$2.losses"; losses "$3" > "$3.losses"
    if [ ! -s "$2.losses" ]; then echo "  $1: no losses logged: $(grep -iE "error|fail" "$2" | head -2 | tr '\n' ' ')"; return; fi
    compare "$1" "$2.losses" "$3.losses"
    verdict "$2"
}
