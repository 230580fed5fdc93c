#!/usr/bin/env bash
# Single-GPU MoE training benchmarks of issue #21 for one device call (about 8 minutes): a Mixtral-style model
# (8 experts of 2816, top-2) and a fine-grained one (64 experts of 384, top-6, a shared expert of 1024), both
# LLaMA-style (hidden 2048, 16 layers, 16 heads / 4 KV groups, seq 2048, micro-batch 2, bf16), through
# `megatron bench train` with the experts one after another and with --moe-grouped-gemm, and through
# scripts/bench_torch_moe.py (torch.compile, experts as torch._grouped_mm) in the same call; then a table of
# tokens/s, TFLOP/s on the active parameters (Megatron's formula on both sides) and peak allocated GPU memory.
# The expert sizes keep ~2.6-2.8B parameters, whose bf16 weights, fp32 main grads, masters and Adam moments
# (18 bytes a parameter here, 16 in torch) fit one 80 GB H100 beside the activations.
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-moe-bench.sh [--only mixtral|fine] [--no-torch] [--no-sequential]
# Each run has its own timeout (ours 120 s, torch 200 s); should the whole go past a device call's 10 minutes, run
# it as two calls, --only mixtral and --only fine.
set -uo pipefail
M=${MEGATRON:-/tmp/g/bin/megatron}
export PYTHONUNBUFFERED=1
common="--bf16 --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --hidden-dropout 0 --attention-dropout 0"
llama="--num-layers 16 --hidden-size 2048 --num-attention-heads 16 --num-query-groups 4 --swiglu --normalization RMSNorm
  --position-embedding-type rope --untie-embeddings-and-output-weights --seq-length 2048 --micro-batch-size 2"
ours_only="--group-query-attention --disable-bias-linear --max-position-embeddings 2048"
mixtral="--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 2816"
fine="--num-experts 64 --moe-router-topk 6 --moe-ffn-hidden-size 384 --moe-shared-expert-intermediate-size 1024"
names=""; torch=1; sequential=1
while [ $# -gt 0 ]; do
    case $1 in --only) names="$names $2"; shift ;; --no-torch) torch=0 ;; --no-sequential) sequential=0 ;; esac
    shift
done
results=$(mktemp)

# "ms tokens/s TFLOP/s MiB" from a result line of ours or of the torch scripts.
fields() {
    sed -nE 's/^(.* )?([0-9.]+) ms\/iter \| ([0-9.]+) tokens\/s \| ([0-9.]+) TFLOP\/s.*peak GPU memory ([0-9.]+) MiB allocated.*/\2 \3 \4 \5/p' | tail -1
}
record() {   # model, implementation, output file
    local f; f=$(fields < "$3")
    echo "$1 $2 ${f:-failed - - -}" >> "$results"
}

if [ $torch = 1 ]; then
    echo "== torch grouped experts against the per-expert loop on the GPU"
    (cd scripts && timeout 60 python3 bench_torch_moe.py --check --swiglu --num-experts 8 --moe-router-topk 2 \
        --moe-ffn-hidden-size 32 --moe-shared-expert-intermediate-size 32) 2>&1 | tail -6
fi
for name in ${names:-mixtral fine}; do
    moe=${!name}
    builds="grouped"; [ $sequential = 1 ] && builds="sequential grouped"
    for build in $builds; do
        extra=""; [ $build = grouped ] && extra="--moe-grouped-gemm"
        echo "== $name: ours, $build experts"
        timeout 120 "$M" bench train --warmup 2 --iterations 5 $llama $ours_only $moe $common $extra > /tmp/moe-$name-$build.txt 2>&1
        tail -2 /tmp/moe-$name-$build.txt
        record "$name" "ours-$build" /tmp/moe-$name-$build.txt
    done
    if [ $torch = 1 ]; then
        echo "== $name: torch.compile"
        (cd scripts && timeout 200 python3 bench_torch_moe.py $llama $moe --warmup 3 --iterations 6) > /tmp/moe-$name-torch.txt 2>&1
        grep -v "^\s*$" /tmp/moe-$name-torch.txt | tail -3
        record "$name" torch /tmp/moe-$name-torch.txt
    fi
done

echo
printf "%-8s %-16s %10s %12s %10s %14s\n" model implementation ms/iter tokens/s TFLOP/s "peak MiB"
while read -r model impl ms tokens tflops mib; do
    printf "%-8s %-16s %10s %12s %10s %14s\n" "$model" "$impl" "$ms" "$tokens" "$tflops" "$mib"
done < "$results"
