#!/usr/bin/env bash
# Multi-GPU checks for device calls (see scripts/build-gpu.sh for the bundle), in sections that can be
# spread over calls (each must fit a 10-minute call):
#   tests    NCCL, tensor-parallel and distributed-optimizer GPU tests
#   small    a small GPT over `megatron launch`: 1 GPU, DP, TP=2+SP x DP, distributed optimizer
#   scaling  GPT-1.3B weak scaling: ours 1 GPU, DP, DP + distributed optimizer (and DP=2), then PyTorch
#            DDP + torch.compile on 1 GPU and all of them, in the same call
#   tp       GPT 1.3B with tensor + sequence parallelism, TP=2 and TP=4
#   kill     a killed rank ends the job
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-parallel.sh OUT_DIR [SECTION ...]     (default: every section)
set -uo pipefail
out=${1:-/tmp/out}; mkdir -p "$out"; shift || true
sections=" ${*:-tests small scaling tp kill} "
want() { [[ "$sections" == *" $1 "* ]]; }
M=/tmp/g/bin/megatron
gpus=$(nvidia-smi -L | wc -l)
export NCCL_NVLS_ENABLE=0
echo "== $gpus GPUs"
if want tests; then
    LD_LIBRARY_PATH=/tmp/g/lib timeout 300 /tmp/g/bin/MegatronPackageTests.xctest \
        MegatronParallelTests.NCCLCommunicatorTests,MegatronCoreTests.TensorParallelGPUTests,MegatronCoreTests.DistributedOptimizerGPUTests \
        > "$out/nccl-tests.log" 2>&1
    grep -E "error:|Executed" "$out/nccl-tests.log" | tail -6
fi

small="--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 512 --max-position-embeddings 512 --micro-batch-size 4 --global-batch-size 16
  --train-iters 20 --lr 3e-4 --log-interval 10 --eval-iters 1 --eval-interval 1000 --hidden-dropout 0 --attention-dropout 0
  --bf16 --mock-data --tokenizer-type NullTokenizer --vocab-size 32767 --seed 3"
if want small; then
    echo "== small model: 1 GPU, then DP=$gpus, then TP=2 x DP, then distributed optimizer"
    timeout 120 $M pretrain-gpt $small 2>&1 | grep -E "iteration +20/|error" | sed 's/.*consumed/consumed/'
    timeout 120 $M launch --nproc-per-node "$gpus" -- pretrain-gpt $small 2>&1 | grep -E "iteration +20/|rror|failed" | sed 's/.*consumed/consumed/'
    timeout 120 $M launch --nproc-per-node "$gpus" -- pretrain-gpt $small --tensor-model-parallel-size 2 --sequence-parallel 2>&1 | grep -E "iteration +20/|rror|failed" | sed 's/.*consumed/consumed/'
    timeout 120 $M launch --nproc-per-node "$gpus" -- pretrain-gpt $small --use-distributed-optimizer --overlap-grad-reduce 2>&1 | grep -E "iteration +20/|rror|failed" | sed 's/.*consumed/consumed/'
fi

big="--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048
  --micro-batch-size 4 --bf16 --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --hidden-dropout 0
  --attention-dropout 0"
if want scaling; then
    bench() { timeout 200 "$@" 2>&1 | grep -E "ms/iter|rror|failed" | sed 's/ | peak.*//'; }
    echo "== GPT 1.3B weak scaling (bench train, 3 warm-up + 8 timed steps): ours 1 GPU, DP=$gpus, DP=$gpus and DP=2 with the distributed optimizer"
    bench $M bench train --warmup 3 --iterations 8 $big --global-batch-size 4
    bench $M launch --nproc-per-node "$gpus" -- bench train --warmup 3 --iterations 8 $big --global-batch-size $((4 * gpus)) --overlap-grad-reduce
    bench $M launch --nproc-per-node "$gpus" -- bench train --warmup 3 --iterations 8 $big --global-batch-size $((4 * gpus)) \
        --overlap-grad-reduce --use-distributed-optimizer --overlap-param-gather
    [ "$gpus" -gt 2 ] && bench $M launch --nproc-per-node 2 -- bench train --warmup 3 --iterations 8 $big --global-batch-size 8 \
        --overlap-grad-reduce --use-distributed-optimizer --overlap-param-gather
    echo "== torch 1 GPU, torch DDP x$gpus (torch.compile)"
    tb="--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 --micro-batch-size 4 --iterations 8 --warmup 3"
    PYTHONUNBUFFERED=1 timeout 200 python3 scripts/bench_torch_gpt.py $tb 2>&1 | tail -1
    PYTHONUNBUFFERED=1 timeout 240 torchrun --nproc-per-node "$gpus" scripts/bench_torch_gpt.py $tb 2>&1 | grep "^torch" | tail -1
fi
big="$big --train-iters 8 --lr 1e-4 --log-interval 4 --eval-iters 1 --eval-interval 1000"
if want tp; then
    echo "== GPT 1.3B, tensor parallel with sequence parallelism (global batch 4: the 1-GPU run's tokens per step)"
    for tp in 2 4; do
        [ "$tp" -le "$gpus" ] || continue
        timeout 200 $M launch --nproc-per-node "$tp" -- pretrain-gpt $big --global-batch-size 4 --tensor-model-parallel-size "$tp" \
            --sequence-parallel 2>&1 | grep -E "iteration +8/|rror|failed" | sed "s/.*elapsed/TP=$tp SP: elapsed/"
    done
fi
if want kill; then
    echo "== a killed rank ends the job"
    start=$(date +%s)
    ( sleep 25; pkill -9 -f "pretrain-gpt" -n ) &
    timeout 120 $M launch --nproc-per-node "$gpus" -- pretrain-gpt $small --train-iters 100000 2>&1 | grep -vE "iteration|^-|validation" | tail -4
    echo "launch rc=$? after $(( $(date +%s) - start )) s (rank killed at ~25 s)"
fi
