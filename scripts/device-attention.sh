#!/usr/bin/env bash
# Issue #17 section 5 on the device, one call: attention GPU tests, `bench attention` with and without
# dropout and at head dims 80 / 96, then training GPT-2 124M with dropouts 0 / 0 and 0.1 / 0.1, GPT-3
# 2.7B's shape (hidden 2560, 32 heads: head dim 80) and a head-dim-96 model, ours and (with --torch)
# PyTorch + torch.compile with the same dropouts (scripts/bench_torch_gpt.py, next to this script).
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash device-attention.sh [--tests] [--kernels] [--profile] [--torch] [--baseline FILE.xz] [--rounds N] [--only NAME ...]
#   NAME: gpt2 (0/0 and 0.1/0.1), gpt2-kernels (0.1/0.1 on our kernels), gpt3 (2.7B shape; GPT3_LAYERS,
#   GPT3_BATCH), d96. --profile adds the op table of the GPT-2 runs. --baseline times each training run
#   with that build too (an xz-packed megatron, e.g. the commit before a change), right after ours; --rounds
#   repeats the training runs. Logs go to $OUT.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
M=${MEGATRON:-/tmp/g/bin/megatron}
OUT=${OUT:-/tmp}
common="--bf16 --mock-data --tokenizer-type NullTokenizer --vocab-size 50257"
gpt2="--num-layers 12 --hidden-size 768 --num-attention-heads 12 --seq-length 1024 --max-position-embeddings 1024 --micro-batch-size 16"
gpt3="--num-layers ${GPT3_LAYERS:-32} --hidden-size 2560 --num-attention-heads 32 --seq-length 2048 --max-position-embeddings 2048 --micro-batch-size ${GPT3_BATCH:-4}"
d96="--num-layers 24 --hidden-size 1536 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048 --micro-batch-size 4"
tests=0; kernels=0; profile=0; torch=0; names=""; baseline=""; rounds=1
while [ $# -gt 0 ]; do
    case $1 in --tests) tests=1 ;; --kernels) kernels=1 ;; --profile) profile=1 ;; --torch) torch=1 ;;
        --only) names="$names $2"; shift ;; --baseline) baseline=$2; shift ;; --rounds) rounds=$2; shift ;; esac
    shift
done
if [ -n "$baseline" ]; then xz -dc "$baseline" > /tmp/megatron-baseline && chmod +x /tmp/megatron-baseline; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if [ $tests = 1 ]; then
    classes=MegatronTensorTests.AddNormGPUTests,MegatronCUDATests.AttentionGPUTests,MegatronCUDATests.CuDNNAttentionGPUTests,MegatronCUDATests.CuDNNDescriptorTests,MegatronCoreTests.FusedAttentionGPUTests
    classes=$classes,MegatronCUDATests.RowKernelGPUTests,MegatronCUDATests.ElementwiseNeuralGPUTests
    classes=$classes,MegatronCUDATests.AttentionMaskingGPUTests,MegatronCUDATests.GemmReductionPrecisionTests
    classes=$classes,MegatronCoreTests.GatedDeltaRuleTests,MegatronCoreTests.ModelFeatureGoldenTests
    classes=$classes,MegatronCoreTests.RotaryEmbeddingGPUTests,MegatronTensorTests.GPUOpsTests
    LD_LIBRARY_PATH=/tmp/g/lib timeout ${TESTS_TIMEOUT:-240} /tmp/g/bin/MegatronPackageTests.xctest "$classes" > "$OUT/tests.log" 2>&1
    echo "tests: $(grep -E "Executed [0-9]+ tests?," "$OUT/tests.log" | tail -1 | sed 's/^[[:space:]]*//')"
    grep -E "error:|Fatal error|kept .* visible" "$OUT/tests.log" | head -12
    MEGATRON_ATTENTION=kernels LD_LIBRARY_PATH=/tmp/g/lib timeout 60 /tmp/g/bin/MegatronPackageTests.xctest \
        MegatronCoreTests.FusedAttentionGPUTests > "$OUT/tests-kernels.log" 2>&1
    echo "FusedAttentionGPUTests under our kernels: $(grep -E "Executed [0-9]+ tests?," "$OUT/tests-kernels.log" | tail -1 | sed 's/^[[:space:]]*//')"
    grep -E "error:|Fatal error" "$OUT/tests-kernels.log" | head -5
fi

if [ $kernels = 1 ]; then
    shapes=${ATTENTION_SHAPES:-16x12x1024x64,4x32x2048x80,4x16x2048x96}
    for backend in cudnn kernels; do
        for p in 0 0.1; do
            echo "== bench attention --backend $backend --dropout $p"
            timeout 90 $M bench attention --backend $backend --dropout $p --shapes $shapes 2>&1 | grep -v "^device"   # then cuDNN's engine-config timings
        done
    done
fi

train() {   # name, flags, dropouts (hidden attention), [env]
    local name=$1 flags=$2 hidden=$3 attention=$4 env=${5:-}
    local build binary
    for build in ours ${baseline:+baseline}; do
        binary=$M; [ $build = baseline ] && binary=/tmp/megatron-baseline
        echo "== $name dropout $hidden/$attention $build${env:+ ($env)}"
        env $env timeout 200 $binary bench train --warmup 3 --iterations 8 $flags $common --hidden-dropout $hidden \
            --attention-dropout $attention 2>&1 | tail -2
    done
    if [ $profile = 1 ] && [ $name = gpt2 ]; then
        env $env MEGATRON_PROFILE=1 timeout 120 $M bench train --warmup 2 --iterations 3 $flags $common --hidden-dropout $hidden \
            --attention-dropout $attention > "$OUT/profile-$name-$hidden.log" 2>&1
        tail -41 "$OUT/profile-$name-$hidden.log" | head -24
    fi
    if [ $torch = 1 ]; then
        echo "== $name dropout $hidden/$attention torch.compile"
        local tflags=$(echo $flags | sed 's/--max-position-embeddings [0-9]*//')
        PYTHONUNBUFFERED=1 timeout 300 python3 "$here/bench_torch_gpt.py" $tflags --hidden-dropout $hidden \
            --attention-dropout $attention --iterations 10 --warmup 4 2>&1 | grep -v "^\s*$" | tail -1
    fi
}
for round in $(seq "$rounds"); do
    for name in ${names:-gpt2 gpt3 d96}; do
        case $name in
            gpt2) train gpt2 "$gpt2" 0 0; train gpt2 "$gpt2" 0.1 0.1 ;;
            gpt2-kernels) train gpt2 "$gpt2" 0.1 0.1 MEGATRON_ATTENTION=kernels ;;
            gpt3) train gpt3 "$gpt3" 0.1 0.1 ;;
            d96) train d96 "$d96" 0.1 0.1 ;;
        esac
    done
done
