#!/usr/bin/env bash
# Issue #23 on a multi-GPU device call: pipeline and 3D parallelism. Takes the GPU count from nvidia-smi and
# scales the plan to it (2, 4 or 8 GPUs). Two sections, each meant for one 10-minute call; a run that would
# start after TIME_BUDGET seconds (default 540) is skipped and named, so a section never overruns its call.
#   perf     bench train, GPT 1.3B and a 6.7B-class model (32 layers, hidden 4096, seq 2048): PP=2/4/8 and
#            interleaved VP=2 (step time, tokens/s and TFLOP/s per GPU, every stage's time waiting on its
#            transfers against the bubble bound (p-1)/(m+p-1), peak memory per stage), then 3D layouts of the
#            6.7B model (TP2 x PP2 x DP2 with SP and the distributed optimizer against TP / PP / DP mixes), MFU each
#   correct  20-step losses of PP layouts against one GPU and TP only (same seed, dropout 0, fp32); a killed rank of
#            a PP run ends the job within 30 s naming it; a TP2 x PP2 x DP2 checkpoint resumed at PP4 (x DP2) and
#            TP4 x DP2 logs the uninterrupted run's losses
# Usage on the device (bundle of scripts/build-gpu.sh unpacked in /tmp/g, repository root):
#   bash scripts/device-multigpu-pp.sh OUT_DIR [perf] [correct | loss kill ckpt]        (default: perf correct)
# CPU dry run here (thread ranks, tiny sizes, every launch checked by --check-nccl-order; catches flag typos,
# layouts that do not divide, and communication that would hang on NCCL):
#   DRY_RUN=1 GPUS=4 M=.build/debug/megatron bash scripts/device-multigpu-pp.sh /tmp/pp-dry perf correct
set -uo pipefail
default_sections="perf correct"
source "$(dirname "$0")/multigpu-common.sh"
# bf16 dense peak of one H100 / H200 SXM (TFLOP/s), for MFU.
peak=${PEAK_TFLOPS:-989}

common="--mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --hidden-dropout 0 --attention-dropout 0 --seed 1234"
gpt13="--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048"
gpt67="--num-layers 32 --hidden-size 4096 --num-attention-heads 32 --seq-length 2048 --max-position-embeddings 2048"
mid="--num-layers 8 --hidden-size 1024 --num-attention-heads 16 --seq-length 1024 --max-position-embeddings 1024"
precision="--bf16"
batch13="--micro-batch-size 2 --global-batch-size 32"
batch67="--micro-batch-size 1 --global-batch-size 16"
batch_mid="--micro-batch-size 2 --global-batch-size 16"
# The correctness runs pin the vocabulary: padding it to a multiple of 128 x TP would give each TP size a model
# of its own (other rows, other logits).
vocab_mid="--padded-vocab-size 50304"
if [ "$dry" = 1 ]; then
    vocab_mid="--padded-vocab-size 128"
    batch_mid="--micro-batch-size 1 --global-batch-size 8"
    batch13="--micro-batch-size 1 --global-batch-size 8"
    batch67="--micro-batch-size 1 --global-batch-size 8"
    # Tiny widths and the fewest layers that split as the device's layouts do (24 and 32 layers divide alike
    # over the stages and chunks used here), a few micro-batches.
    common="--mock-data --tokenizer-type NullTokenizer --vocab-size 128 --hidden-dropout 0 --attention-dropout 0 --seed 1234"
    gpt13="--num-layers 8 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16"
    gpt67="--num-layers 16 --hidden-size 64 --num-attention-heads 8 --seq-length 16 --max-position-embeddings 16"
    mid="--num-layers 8 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16"
    precision=""
fi

# bench NAME RANKS FLAGS...: one bench train run; prints its bench: line with MFU, then per pipeline stage the
# slowest rank's transfer wait and the largest peak allocation; keeps the whole output in $out.
bench() {
    local name=$1
    bench_run "$@" || return 0
    local line=$bench_line log=$bench_log
    local tflops=$(sed 's/.*tflops_per_gpu=\([0-9.]*\).*/\1/' <<< "$line")
    printf "%-22s %s mfu=%.1f%% (%ds)\n" "$name" "${line#bench: }" "$(awk -v t="$tflops" -v p="$peak" 'BEGIN { print 100 * t / p }')" \
        $(( $(date +%s) - bench_started ))
    grep "^pipeline:" "$log" | sed 's/^/    /'
    verdict "$log"
    # Rows: rank tp pp dp ep ms p2p-wait wait% a2a-wait a2a% peak-alloc peak-reserved host.
    awk '$1 ~ /^[0-9]+$/ && NF >= 13 {
            pp = $3; if (!(pp in wait) || $8 > wait[pp]) wait[pp] = $8
            if (!(pp in mem) || $11 > mem[pp]) mem[pp] = $11; if (pp > last) last = pp
         }
         END { if (last > 0) { printf "    per stage (max over its ranks): "
               for (s = 0; s <= last; s++) printf "pp%d wait %s%% peak %s MiB; ", s, wait[s], mem[s]; print "" } }' "$log"
}

if want perf; then
    echo "== GPT 1.3B ($batch13): DP=$gpus, then PP=p x DP=$gpus/p, 1F1B and interleaved VP=2"
    f13="$gpt13 $common $precision $batch13"
    bench "1.3B DP$gpus" "$gpus" $f13
    for p in 2 4 8; do
        [ "$p" -le "$gpus" ] || continue
        bench "1.3B PP$p DP$((gpus / p))" "$gpus" $f13 --pipeline-model-parallel-size "$p"
    done
    for p in 2 4; do
        [ "$p" -le "$gpus" ] || continue
        bench "1.3B PP$p VP2 DP$((gpus / p))" "$gpus" $f13 --pipeline-model-parallel-size "$p" --num-virtual-stages-per-pipeline-rank 2
    done

    echo "== 6.7B-class (32 layers, hidden 4096, seq 2048; $batch67, distributed optimizer): PP and 3D layouts"
    f67="$gpt67 $common $precision $batch67 --use-distributed-optimizer --overlap-grad-reduce"
    sp="--sequence-parallel"
    case $gpus in
        8) layouts=("PP8|1|8" "PP8 VP2|1|8|2" "PP4 DP2|1|4" "PP4 VP2 DP2|1|4|2" "TP2 PP2 DP2|2|2" "TP2 PP4|2|4" "TP4 DP2|4|1" "TP4 PP2|4|2" "TP8|8|1") ;;
        4) layouts=("PP4|1|4" "PP4 VP2|1|4|2" "TP2 PP2|2|2" "TP4|4|1" "TP2 DP2|2|1") ;;
        *) layouts=("PP2|1|2" "PP2 VP2|1|2|2" "TP2|2|1") ;;
    esac
    results="$out/layouts.txt"; : > "$results"
    for entry in "${layouts[@]}"; do
        IFS='|' read -r name tp pp vp <<< "$entry"
        flags="--tensor-model-parallel-size $tp --pipeline-model-parallel-size $pp"
        [ "$tp" -gt 1 ] && flags="$flags $sp"
        [ -n "${vp:-}" ] && flags="$flags --num-virtual-stages-per-pipeline-rank $vp"
        bench "6.7B $name" "$gpus" $f67 $flags | tee -a "$results"
    done
    echo "== 6.7B layouts by MFU (best first)"
    grep "mfu=" "$results" | sed 's/^\(6.7B [A-Z0-9 ]*[0-9]\) .*tokens_per_s_per_gpu=\([0-9]*\).*mfu=\([0-9.]*\)%.*/\3 \1 (\2 tokens\/s per GPU)/' | sort -rn |
        awk '{ printf "  MFU %5.1f%%  %s\n", $1, substr($0, index($0, " ") + 1) }'
fi

# correct = loss + kill + ckpt
part() { want correct || want "$1"; }
if part loss || part kill || part ckpt; then
    iters=20; [ "$dry" = 1 ] && iters=3
    # fp32, so that the layouts differ only in the order of their reductions.
    train="$mid $common $vocab_mid $batch_mid --lr 3e-4 --lr-decay-style constant --min-lr 3e-4
      --log-interval 1 --eval-iters 0"
    steps="--train-iters $iters"
fi
if part loss; then
    echo "== losses over $iters steps (8 layers, hidden 1024, seq 1024, $batch_mid, fp32): PP layouts against one GPU and TP only"
    in_budget "one GPU" && timeout $run_timeout $M pretrain-gpt $train $steps > "$out/loss-1gpu.log" 2>&1
    echo "  one GPU: $(losses "$out/loss-1gpu.log" | tr '\n' ' ' | cut -c1-160)"
    runs=("TP2|2|--tensor-model-parallel-size 2 --sequence-parallel")
    for p in 2 4 8; do [ "$p" -le "$gpus" ] && runs+=("PP$p|$p|--pipeline-model-parallel-size $p"); done
    [ "$gpus" -ge 4 ] && runs+=("PP4 VP2|4|--pipeline-model-parallel-size 4 --num-virtual-stages-per-pipeline-rank 2")
    [ "$gpus" -ge 8 ] && runs+=("TP2 PP2 DP2 SP distopt|8|--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --sequence-parallel --use-distributed-optimizer")
    for entry in "${runs[@]}"; do
        IFS='|' read -r name ranks flags <<< "$entry"
        in_budget "losses $name" || continue
        log="$out/loss-${name// /_}.log"
        timeout $run_timeout $(launch "$ranks") pretrain-gpt $train $steps $flags > "$log" 2>&1
        compare_logs "$name" "$log" "$out/loss-1gpu.log"
    done

fi
if part kill; then
    echo "== a killed rank of a PP=$gpus run ends the job"
    if [ "$dry" = 1 ]; then
        echo "  (not in a dry run: thread ranks have no process to kill)"
    elif in_budget "kill"; then
        victim=$((gpus - 1))
        log="$out/kill.log"
        $M launch --nproc-per-node "$gpus" -- pretrain-gpt $train --train-iters 100000 --pipeline-model-parallel-size "$gpus" > "$log" 2>&1 &
        launcher=$!
        # Kill the last stage's rank once training runs (found by its RANK in its environment, not by name).
        for _ in $(seq 1 90); do grep -q "iteration" "$log" && break; sleep 1; done
        for pid in $(pgrep -P "$launcher"); do
            if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "RANK=$victim"; then kill -9 "$pid"; killed=$(date +%s); fi
        done
        wait "$launcher"; rc=$?
        echo "  killed rank $victim; launch exited rc=$rc $(( $(date +%s) - ${killed:-$(date +%s)} ))s later; its last words:"
        grep -vE "^ *iteration|^-|validation" "$log" | tail -3 | sed 's/^/    /'
    fi

fi
if part ckpt; then
    echo "== checkpoint: TP2 x PP2 x DP2 saved at step $((iters / 2)), resumed at other layouts, against the uninterrupted run"
    if [ "$gpus" -ge 8 ]; then
        saved="--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --sequence-parallel"
        resumes=("PP4 DP2|--pipeline-model-parallel-size 4" "TP4 DP2|--tensor-model-parallel-size 4 --sequence-parallel")
    elif [ "$gpus" -ge 4 ]; then
        saved="--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --sequence-parallel"
        resumes=("PP4|--pipeline-model-parallel-size 4" "TP4|--tensor-model-parallel-size 4 --sequence-parallel")
    else
        saved="--pipeline-model-parallel-size 2"; resumes=("TP2|--tensor-model-parallel-size 2 --sequence-parallel")
    fi
    ckpt="$out/ckpt-pp"; rm -rf "$ckpt"
    ck="$train $steps --use-distributed-optimizer"
    if in_budget "checkpoint save"; then
        timeout $run_timeout $(launch "$gpus") pretrain-gpt $ck $saved --save "$ckpt" --save-interval $((iters / 2)) \
            --exit-interval $((iters / 2)) > "$out/ckpt-save.log" 2>&1
        timeout $run_timeout $(launch "$gpus") pretrain-gpt $ck $saved > "$out/ckpt-uninterrupted.log" 2>&1
        echo "  saved: $(cat "$ckpt/latest_checkpointed_iteration.txt" 2>/dev/null || echo none) ($(grep -c "lm loss" "$out/ckpt-save.log") steps logged)"
        losses "$out/ckpt-uninterrupted.log" | tail -n $((iters - iters / 2)) > "$out/ckpt-tail.txt"
        for entry in "${resumes[@]}"; do
            IFS='|' read -r name flags <<< "$entry"
            in_budget "resume at $name" || continue
            log="$out/ckpt-resume-${name// /_}.log"
            timeout $run_timeout $(launch "$gpus") pretrain-gpt $ck $flags --load "$ckpt" > "$log" 2>&1
            losses "$log" > "$log.losses"
            compare "resumed at $name" "$log.losses" "$out/ckpt-tail.txt"
            verdict "$log"
        done
    fi
fi
echo "== done in $(( $(date +%s) - started ))s"
