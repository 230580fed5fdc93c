#!/usr/bin/env bash
# Issue #16 (reliability) and the GPU checks of this session's other changes, for device calls, in sections:
#   tests   GPU tests of the session's changes: fatal CUDA errors and the out-of-memory report, the NCCL
#           watchdog (a lone rank of a two-rank job ends at --distributed-timeout-minutes), model-feature and
#           Hugging Face goldens on the GPU, squared ReLU, memory logging
#   oom     GPT 1.3B at micro-batch 64 (does not fit an H100): the out-of-memory report and a non-zero exit
#   sgd     --optimizer sgd trains on the GPU
#   speed   bench train of GPT-2 124M and GPT 1.3B (dropout 0) with this build and with the baseline build
#           (.gpu/baseline/megatron.xz, built from the commit before the session), alternating, same call
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-reliability.sh OUT_DIR [SECTION ...]     (default: every section)
set -uo pipefail
out=${1:-/tmp/out}; mkdir -p "$out"; shift || true
sections=" ${*:-tests oom sgd speed} "
want() { [[ "$sections" == *" $1 "* ]]; }
M=/tmp/g/bin/megatron
common="--bf16 --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --hidden-dropout 0 --attention-dropout 0"
gpt2="--num-layers 12 --hidden-size 768 --num-attention-heads 12 --seq-length 1024 --max-position-embeddings 1024 --micro-batch-size 16"
gpt13="--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048"

if want tests; then
    classes=MegatronTensorTests.FatalErrorExitTests,MegatronCUDATests.CachingAllocatorTests,MegatronParallelTests.NCCLWatchdogGPUTests
    classes=$classes,MegatronCLITests.LaunchFailureTests,MegatronCoreTests.ModelFeatureGoldenTests,MegatronCoreTests.ModelFeatureTests
    classes=$classes,MegatronTensorTests.GPUOpsTests,MegatronCoreTests.HuggingFaceGoldenTests,MegatronTrainingTests.MemoryReportTests
    classes=$classes,MegatronTrainingTests.GPUTrainingTests
    LD_LIBRARY_PATH=/tmp/g/lib timeout 300 /tmp/g/bin/MegatronPackageTests.xctest "$classes" > "$out/reliability-tests.log" 2>&1
    echo "tests: $(grep -E "Executed [0-9]+ tests?," "$out/reliability-tests.log" | tail -1 | sed 's/^[[:space:]]*//')"
    grep -E "error:|Fatal error|skipped" "$out/reliability-tests.log" | head -12
fi

if want oom; then
    echo "== GPT 1.3B, micro-batch 64"
    timeout 120 $M pretrain-gpt $gpt13 --micro-batch-size 64 --train-iters 2 --lr 1e-4 $common > "$out/oom.log" 2>&1
    echo "exit status $?"
    grep -iE "out of memory|error|flags" "$out/oom.log" | head -6
fi

if want sgd; then
    echo "== --optimizer sgd on the GPU"
    timeout 120 $M pretrain-gpt --num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 512 \
        --max-position-embeddings 512 --micro-batch-size 4 --train-iters 20 --lr 1e-2 --log-interval 10 --eval-iters 0 \
        --optimizer sgd $common 2>&1 | grep -E "iteration +(10|20)/|rror" | sed 's/.*consumed/consumed/'
fi

if want speed; then
    xz -dc .gpu/baseline/megatron.xz > /tmp/megatron-baseline && chmod +x /tmp/megatron-baseline
    for name in gpt2 gpt13; do
        flags=${!name}; [ $name = gpt13 ] && flags="$flags --micro-batch-size 4"
        # Two rounds of GPT-2 (seconds each), one of GPT 1.3B.
        rounds="1 2"; [ $name = gpt13 ] && rounds=1
        for round in $rounds; do
            for build in baseline new; do
                binary=$M; [ $build = baseline ] && binary=/tmp/megatron-baseline
                echo "== $name $build (round $round): $(timeout 150 $binary bench train --warmup 3 --iterations 8 $flags $common 2>&1 | tail -1)"
            done
        done
    done
fi
