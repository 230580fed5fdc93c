#!/usr/bin/env bash
# Prints the per-iteration losses and gradient norms of a tiny GPT on the CPU for every parallel layout
# (one rank, DDP, the distributed optimizer, TP, TP + SP, TP x DP, fp32 and bf16). A refactor that must not
# change numbers is checked by diffing this script's output before and after it (#18's acceptance):
#   bash scripts/cpu-loss-fingerprint.sh .build/release/megatron > before.txt   # on the old commit
#   bash scripts/cpu-loss-fingerprint.sh .build/release/megatron | diff before.txt -
set -euo pipefail
M=${1:-.build/release/megatron}
tiny="--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
      --micro-batch-size 2 --train-iters 4 --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine --lr-warmup-iters 1
      --log-interval 1 --clip-grad 1.0 --weight-decay 0.1 --seed 1234 --device cpu"
run() {   # name, ranks, flags...
    local name=$1 ranks=$2; shift 2
    local launcher=()
    [ "$ranks" -gt 1 ] && launcher=(launch --threads --nproc-per-node "$ranks" --)
    echo "== $name"
    "$M" "${launcher[@]}" pretrain-gpt $tiny "$@" 2>&1 \
        | grep -oE "iteration +[0-9]+/ *[0-9]+|lm loss: [0-9.E+-]+|grad norm: [0-9.E+-]+" | paste -sd' ' | sed 's/iteration/\niteration/g' | grep .
}
run "one rank fp32" 1 --global-batch-size 4
run "one rank bf16" 1 --global-batch-size 4 --bf16
run "one rank llama" 1 --global-batch-size 4 --swiglu --normalization RMSNorm --position-embedding-type rope \
    --disable-bias-linear --untie-embeddings-and-output-weights --group-query-attention --num-query-groups 2
run "dp2 ddp" 2 --global-batch-size 8
run "dp2 distributed optimizer overlap" 2 --global-batch-size 8 --use-distributed-optimizer --overlap-grad-reduce --overlap-param-gather --bf16
run "tp2" 2 --global-batch-size 4 --tensor-model-parallel-size 2
run "tp2 sp llama" 2 --global-batch-size 4 --tensor-model-parallel-size 2 --sequence-parallel --swiglu --normalization RMSNorm \
    --position-embedding-type rope --qk-layernorm
run "tp2 dp2 distributed optimizer" 4 --global-batch-size 8 --tensor-model-parallel-size 2 --sequence-parallel --use-distributed-optimizer
