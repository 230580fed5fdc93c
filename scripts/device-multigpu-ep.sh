#!/usr/bin/env bash
# Issue #24 on a multi-GPU device call: expert parallelism. Takes the GPU count from nvidia-smi and scales the
# plan to it (2, 4 or 8 GPUs); a run that would start after TIME_BUDGET seconds (default 540) is skipped and
# named, so the script fits one 10-minute call.
#   perf   bench train: a Mixtral-style model (8 experts, top-2, SwiGLU, GQA, RoPE, RMSNorm) at EP=G with the
#          alltoall and the allgather dispatchers and at EP=G/2 x DP=2, and a fine-grained one (64 experts,
#          top-6, a shared expert) at EP=G: tokens/s and TFLOP/s (active parameters) per GPU, the share of the
#          step the compute waits on the all-to-alls, peak memory
#   scale  weak scaling of EP from 1 to G GPUs: 2 experts and the same tokens per GPU at every size
#   loss   20-step losses at EP=G (alltoall) and EP=G/2 x DP=2 against EP=1 on one GPU (same seed and
#          micro-batches, no token dropping, fp32 so that only the reduction order differs)
#   torch  PyTorch's reference MoE with expert parallelism by torch.distributed all-to-all, when
#          scripts/bench_torch_moe.py has such a mode (TORCH_MOE_ARGS gives its flags)
# Usage on the device (bundle of scripts/build-gpu.sh unpacked in /tmp/g, repository root):
#   bash scripts/device-multigpu-ep.sh OUT_DIR [perf] [scale] [loss] [torch]    (default: all)
# CPU dry run here (thread ranks, tiny sizes, every launch checked by --check-nccl-order):
#   DRY_RUN=1 GPUS=4 M=.build/debug/megatron bash scripts/device-multigpu-ep.sh /tmp/ep-dry
set -uo pipefail
default_sections="perf scale loss torch"
source "$(dirname "$0")/multigpu-common.sh"

common="--mock-data --tokenizer-type NullTokenizer --vocab-size 32000 --hidden-dropout 0 --attention-dropout 0 --seed 1234
  --swiglu --normalization RMSNorm --position-embedding-type rope --disable-bias-linear --untie-embeddings-and-output-weights
  --group-query-attention --moe-aux-loss-coeff 1e-2"
shape="--num-layers 8 --hidden-size 2048 --num-attention-heads 16 --num-query-groups 8 --seq-length 2048 --max-position-embeddings 2048"
mixtral="--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 5632"
fine="--num-experts 64 --moe-router-topk 6 --moe-ffn-hidden-size 1408 --moe-shared-expert-intermediate-size 2816"
small="--num-layers 4 --hidden-size 1024 --num-attention-heads 16 --num-query-groups 8 --seq-length 1024 --max-position-embeddings 1024"
precision="--bf16"; mbs=4; expert_ffn=5632
if [ "$dry" = 1 ]; then
    common="${common/--vocab-size 32000/--vocab-size 128}"
    shape="--num-layers 2 --hidden-size 32 --num-attention-heads 4 --num-query-groups 2 --seq-length 16 --max-position-embeddings 16"
    small="$shape"
    mixtral="--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 48"
    fine="--num-experts 64 --moe-router-topk 6 --moe-ffn-hidden-size 16 --moe-shared-expert-intermediate-size 32"
    precision=""; mbs=1; expert_ffn=48
fi

# bench NAME RANKS FLAGS...: one bench train run (on one GPU without launch); prints its bench: line with the
# peak reserved memory of the rank that reserved most; the whole output stays in $out.
bench() {
    local name=$1
    bench_run "$@" || return 0
    local line=$bench_line log=$bench_log
    local reserved=$(awk '$1 ~ /^[0-9]+$/ && NF >= 13 && $12 != "-" && $12 > max { max = $12 } END { print max ? max : "-" }' "$log")
    printf "%-30s %s peak_reserved_mib_max=%s (%ds)\n" "$name" "${line#bench: }" "$reserved" $(( $(date +%s) - bench_started ))
    verdict "$log"
}

if want perf; then
    gb=$((mbs * gpus * 2))
    echo "== Mixtral-style (8 layers, hidden 2048, 8 experts of 5632, top-2) and fine-grained (64 experts of 1408, top-6, shared 2816); micro-batch $mbs, global batch $gb"
    m="$shape $common $precision $mixtral --micro-batch-size $mbs --global-batch-size $gb"
    bench "mixtral EP$gpus alltoall" "$gpus" $m --expert-model-parallel-size "$gpus" --moe-token-dispatcher-type alltoall
    bench "mixtral EP$gpus allgather" "$gpus" $m --expert-model-parallel-size "$gpus" --moe-token-dispatcher-type allgather
    [ "$gpus" -ge 4 ] && bench "mixtral EP$((gpus / 2)) DP2 alltoall" "$gpus" $m --expert-model-parallel-size $((gpus / 2)) \
        --moe-token-dispatcher-type alltoall
    f="$shape $common $precision $fine --micro-batch-size $mbs --global-batch-size $gb"
    bench "fine-grained EP$gpus alltoall" "$gpus" $f --expert-model-parallel-size "$gpus" --moe-token-dispatcher-type alltoall
    bench "fine-grained EP$gpus allgather" "$gpus" $f --expert-model-parallel-size "$gpus" --moe-token-dispatcher-type allgather
fi

if want scale; then
    echo "== weak scaling: EP=n on n GPUs, 2 experts (top-2) and micro-batch $mbs x 2 per GPU"
    results="$out/scaling.txt"; : > "$results"
    for n in 1 2 4 8; do
        [ "$n" -le "$gpus" ] || continue
        flags="$shape $common $precision --num-experts $((2 * n)) --moe-router-topk 2 --moe-ffn-hidden-size $expert_ffn
          --micro-batch-size $mbs --global-batch-size $((mbs * n * 2)) --moe-token-dispatcher-type alltoall"
        [ "$n" -gt 1 ] && flags="$flags --expert-model-parallel-size $n"
        bench "EP$n" "$n" $flags | tee -a "$results"
    done
    awk '/tokens_per_s_per_gpu=/ { match($0, /tokens_per_s_per_gpu=[0-9]+/); t = substr($0, RSTART + 21, RLENGTH - 21)
                                   if (!base) base = t; printf "  %s: %s tokens/s per GPU, %.1f%% of EP=1\n", $1, t, 100 * t / base }' "$results"
fi

if want loss; then
    iters=20; [ "$dry" = 1 ] && iters=3
    gb=$((2 * gpus))
    train="$small $common $mixtral --micro-batch-size 1 --global-batch-size $gb --lr 3e-4 --lr-decay-style constant --min-lr 3e-4
      --log-interval 1 --eval-iters 0 --train-iters $iters --moe-token-dispatcher-type alltoall"
    echo "== losses over $iters steps (4 layers, hidden 1024, 8 experts top-2, fp32, global batch $gb of micro-batch 1): EP against EP=1"
    if in_budget "EP=1"; then
        timeout $run_timeout $M pretrain-gpt $train > "$out/loss-ep1.log" 2>&1
        echo "  EP=1: $(losses "$out/loss-ep1.log" | tr '\n' ' ' | cut -c1-160)"
    fi
    runs=("EP$gpus|--expert-model-parallel-size $gpus")
    [ "$gpus" -ge 4 ] && runs+=("EP$((gpus / 2)) DP2 distopt|--expert-model-parallel-size $((gpus / 2)) --use-distributed-optimizer")
    for entry in "${runs[@]}"; do
        IFS='|' read -r name flags <<< "$entry"
        in_budget "losses $name" || continue
        log="$out/loss-${name// /_}.log"
        timeout $run_timeout $(launch "$gpus") pretrain-gpt $train $flags > "$log" 2>&1
        compare_logs "$name" "$log" "$out/loss-ep1.log"
    done
fi

if want torch; then
    echo "== PyTorch reference MoE with torch.distributed all-to-all"
    if [ "$dry" = 1 ]; then
        echo "  (not in a dry run)"
    elif [ ! -f scripts/bench_torch_moe.py ] || ! grep -q "all_to_all" scripts/bench_torch_moe.py; then
        echo "  skipped: scripts/bench_torch_moe.py has no torch.distributed all-to-all mode"
    elif in_budget "torch"; then
        PYTHONUNBUFFERED=1 timeout $run_timeout torchrun --nproc-per-node "$gpus" scripts/bench_torch_moe.py ${TORCH_MOE_ARGS:-} 2>&1 | tail -4
    fi
fi
echo "== done in $(( $(date +%s) - started ))s"
