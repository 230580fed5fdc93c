#!/usr/bin/env bash
# Single-GPU training benchmarks of issue #4 for one device call: GPT-2 124M, GPT 1.3B and a LLaMA-style
# 1B through `megatron bench train`, and (with --torch) scripts/bench_torch_gpt.py on the same configs in
# the same call. With --profile each config is repeated under MEGATRON_PROFILE=1 (op table), and torch's
# run (with --torch) prints its top kernels. With --timeline each config is repeated under
# MEGATRON_PROFILE=timeline (where the GPU sat idle, and before which op). --only NAME (gpt2, gpt13, llama;
# repeatable) picks configs. --baseline FILE times an earlier build (a megatron binary, or one packed as FILE.xz) right after
# ours on each config, --rounds N repeats ours and the baseline N times, alternating, for a before/after.
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-train-bench.sh [--torch] [--profile] [--timeline] [--baseline FILE[.xz]] [--rounds N] [--only NAME ...]
set -uo pipefail
M=${MEGATRON:-/tmp/g/bin/megatron}
. "$(dirname "$0")/bench-configs.sh"
torch=0; profile=0; timeline=0; names=""; baseline=""; rounds=1
while [ $# -gt 0 ]; do
    case $1 in --torch) torch=1 ;; --profile) profile=1 ;; --timeline) timeline=1 ;; --only) names="$names $2"; shift ;;
        --baseline) baseline=$2; shift ;; --rounds) rounds=$2; shift ;; esac
    shift
done
case $baseline in   # an xz-packed build is unpacked first; a plain one runs as it is
    "") ;; *.xz) xz -dc "$baseline" > /tmp/megatron-baseline && chmod +x /tmp/megatron-baseline ;; *) cp "$baseline" /tmp/megatron-baseline ;;
esac
tprofile=""; [ $profile = 1 ] && tprofile=--profile

for name in ${names:-gpt2 gpt13 llama}; do
    flags=$(megatron_flags $name)
    for round in $(seq "$rounds"); do
        for build in ours ${baseline:+baseline}; do
            binary=$M; [ $build = baseline ] && binary=/tmp/megatron-baseline
            echo "== $name: $build"
            timeout 150 $binary bench train --warmup 3 --iterations 8 $flags 2>&1 | tail -1
        done
    done
    if [ $torch = 1 ]; then
        echo "== $name: torch.compile"
        PYTHONUNBUFFERED=1 timeout 240 python3 scripts/bench_torch_gpt.py $(torch_flags $name) --iterations 10 --warmup 4 $tprofile 2>&1 \
            | grep -v "^\s*$" | tail -$([ $profile = 1 ] && echo 40 || echo 1)
    fi
    if [ $profile = 1 ]; then
        echo "== $name: op profile"
        MEGATRON_PROFILE=1 timeout 150 $M bench train --warmup 2 --iterations 3 $flags 2>&1 | tail -41 | head -34
    fi
    if [ $timeline = 1 ]; then
        echo "== $name: timeline"
        MEGATRON_PROFILE=timeline timeout 150 $M bench train --warmup 2 --iterations 3 $flags 2>&1 | tail -40
    fi
done
