#!/usr/bin/env bash
# FP8 training speed of issue #22 in one device call (one H100, under ~8 minutes): GPT 1.3B and a LLaMA-style
# 1B (seq 2048, scripts/bench-configs.sh) through `megatron bench train` in BF16, FP8 hybrid with delayed
# scaling and FP8 hybrid with tensorwise scaling, and scripts/bench_torch_gpt.py on the same models: torch.compile
# in BF16 and torchao's float8 training (tensorwise) + torch.compile. Ends with a table: tokens/s, ours against our
# BF16 and against torchao float8, peak GPU memory (allocated). The torchao wheel travels in .whl/ (the device has
# none: see the device README's notes) and is installed into /tmp/site first.
#   usage (on the device, repository root, bundle unpacked in /tmp/g, .whl carried):
#     bash scripts/device-fp8-bench.sh [--only gpt13|llama ...] [--no-torch] [--budget SECONDS]
# Every run ends inside the time budget (default 540 s from the start: it is cut short or skipped, and says so),
# so the table still comes back inside one call; --only gpt13 and --only llama split the work over two calls.
set -uo pipefail
. "$(dirname "$0")/bench-configs.sh"
M=${MEGATRON:-/tmp/g/bin/megatron}
names=""; torch=1; budget=540
while [ $# -gt 0 ]; do
    case $1 in --only) names="$names $2"; shift ;; --no-torch) torch=0 ;; --budget) budget=$2; shift ;; esac
    shift
done

if [ $torch = 1 ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/torchao-*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} \
        && python3 -c "import torch, torchao; print('torch', torch.__version__, 'torchao', torchao.__version__)" \
        || { echo "torchao did not install from .whl/: the torch runs are skipped"; torch=0; }
fi

fp8_delayed="--fp8-format hybrid --fp8-recipe delayed"
fp8_tensorwise="--fp8-format hybrid --fp8-recipe tensorwise"
declare -A tokens memory   # "<model> <run>" -> tokens/s, peak allocated MiB

# Runs one benchmark (model, run name, time limit, then its command) unless the budget is spent, prints its
# last lines and records its tokens/s and peak allocated memory under "$1 $2".
measure() {
    local key="$1 $2" full=$3 limit=$3 output line
    shift 3
    # Each run ends by the budget: it gets what is left of it, and none when that is under a third of its limit.
    [ $((budget - SECONDS)) -lt "$limit" ] && limit=$((budget - SECONDS))
    if [ "$limit" -lt $((full / 3)) ]; then
        echo "== $key: skipped, ${SECONDS}s of the ${budget}s budget spent"
        return
    fi
    echo "== $key"
    # Ours prints its model line (naming the FP8 recipe, when on) before the timing; torch prints one line.
    output=$(PYTHONUNBUFFERED=1 timeout "$limit" "$@" 2>&1 | grep -v "^\s*$" | tail -2)
    echo "$output"
    line=$(echo "$output" | tail -1)
    tokens[$key]=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) tokens\/s.*/\1/p')
    memory[$key]=$(echo "$line" | sed -n 's/.*peak GPU memory \([0-9.]*\) MiB allocated.*/\1/p')
}

for name in ${names:-gpt13 llama}; do
    flags=$(megatron_flags $name)
    measure $name "ours bf16" 150 $M bench train --warmup 3 --iterations 8 $flags
    measure $name "ours fp8 delayed" 150 $M bench train --warmup 3 --iterations 8 $flags $fp8_delayed
    measure $name "ours fp8 tensorwise" 150 $M bench train --warmup 3 --iterations 8 $flags $fp8_tensorwise
    if [ $torch = 1 ]; then
        measure $name "torch bf16" 200 python3 scripts/bench_torch_gpt.py $(torch_flags $name) --iterations 10 --warmup 4
        measure $name "torchao float8" 200 python3 scripts/bench_torch_gpt.py $(torch_flags $name) --iterations 10 --warmup 4 --float8
    fi
done

# a / b to two decimals, or "-" when either is missing.
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }' || echo "-"; }

echo
printf "%-6s %-20s %10s %9s %12s %12s\n" model run tokens/s "vs bf16" "vs torchao" "peak MiB"
for name in ${names:-gpt13 llama}; do
    for run in "ours bf16" "ours fp8 delayed" "ours fp8 tensorwise" "torch bf16" "torchao float8"; do
        key="$name $run"
        [ -n "${tokens[$key]:-}" ] || { printf "%-6s %-20s %10s\n" $name "$run" "no result"; continue; }
        printf "%-6s %-20s %10.0f %9s %12s %12s\n" $name "$run" "${tokens[$key]}" \
            "$(ratio "${tokens[$key]}" "${tokens[$name ours bf16]:-}")" \
            "$(ratio "${tokens[$key]}" "${tokens[$name torchao float8]:-}")" "${memory[$key]:--}"
    done
done
echo "(vs bf16: against our BF16; vs torchao: against torchao float8 + torch.compile; peak: allocated GPU memory)"
