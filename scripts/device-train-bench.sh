#!/usr/bin/env bash
# Single-GPU training benchmarks of issue #4 for one device call: GPT-2 124M, GPT 1.3B and a LLaMA-style
# 1B through `megatron bench train`, and (with --torch) scripts/bench_torch_gpt.py on the same configs in
# the same call. With --profile the LLaMA run is repeated under MEGATRON_PROFILE=1 (op table).
#   usage (on the device, repository root, bundle unpacked in /tmp/g): bash scripts/device-train-bench.sh [--torch] [--profile]
set -uo pipefail
M=${MEGATRON:-/tmp/g/bin/megatron}
common="--bf16 --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --hidden-dropout 0 --attention-dropout 0"
gpt2="--num-layers 12 --hidden-size 768 --num-attention-heads 12 --seq-length 1024 --max-position-embeddings 1024 --micro-batch-size 16"
gpt13="--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048 --micro-batch-size 4"
llama="--num-layers 16 --hidden-size 2048 --num-attention-heads 32 --num-query-groups 8 --ffn-hidden-size 8192 --swiglu
  --normalization RMSNorm --position-embedding-type rope --untie-embeddings-and-output-weights --seq-length 2048 --micro-batch-size 4"
llama_ours="--group-query-attention --disable-bias-linear --max-position-embeddings 2048"
torch=0; profile=0
for a in "$@"; do case $a in --torch) torch=1 ;; --profile) profile=1 ;; esac; done

for name in gpt2 gpt13 llama; do
    flags=${!name}; extra=""; [ $name = llama ] && extra=$llama_ours
    echo "== $name: ours"
    timeout 150 $M bench train --warmup 3 --iterations 8 $flags $extra $common 2>&1 | tail -1
    if [ $torch = 1 ]; then
        echo "== $name: torch.compile"
        tflags=$(echo $flags | sed 's/--max-position-embeddings [0-9]*//')
        PYTHONUNBUFFERED=1 timeout 240 python3 scripts/bench_torch_gpt.py $tflags --iterations 10 --warmup 4 2>&1 | tail -1
    fi
done
if [ $profile = 1 ]; then
    echo "== llama: op profile"
    MEGATRON_PROFILE=1 timeout 150 $M bench train --warmup 2 --iterations 3 $llama $llama_ours $common 2>&1 | tail -41 | head -30
fi
