#!/usr/bin/env bash
# FP8 convergence of issue #22 in one device call: a GPT-2 124M-shaped model (12 layers, hidden 768, 12 heads)
# trained 1,000 steps on real text (the shared corpus, tokenized here by `megatron preprocess-data` with the
# shared 8k byte-level BPE) in BF16 and in FP8 hybrid with delayed scaling, from the same seed, evaluated every
# 100 steps; then the FP8 run again, stopped at step 500 with a checkpoint and resumed from it. Prints the final
# validation losses and their relative difference (target: within 1%), the skipped and NaN iterations of each
# run, the training losses every 50 steps side by side, and whether the resumed run's losses equal the
# uninterrupted run's. Every run is --deterministic-mode, so the resumed run can be held to equality.
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-fp8-convergence.sh [--data DIR] [--steps N] [--smoke]
# --smoke shrinks the model (2 layers, hidden 64, seq 64) and the run (40 steps, eval every 10): a check of the
# script itself on a CPU.
# DIR holds docs-3mb.jsonl and bytelevel-bpe-8k/{vocab.json,merges.txt}, copied from ../shared/data
# (corpus/ and tokenizers/) into a carried, git-ignored folder, default .gpu/data:
#     mkdir -p .gpu/data && cp ../shared/data/corpus/docs-3mb.jsonl .gpu/data/ \
#         && cp -r ../shared/data/tokenizers/bytelevel-bpe-8k .gpu/data/
# Logs go to $OUT (or /tmp/fp8-convergence) as bf16.log, fp8.log, fp8-first.log, fp8-resumed.log.
set -uo pipefail
M=${MEGATRON:-/tmp/g/bin/megatron}
data=.gpu/data; steps=1000; smoke=0
while [ $# -gt 0 ]; do
    case $1 in --data) data=$2; shift ;; --steps) steps=$2; shift ;; --smoke) smoke=1; steps=40 ;; esac
    shift
done
logs=${OUT:-/tmp/fp8-convergence}; work=/tmp/fp8-convergence-work
mkdir -p "$logs" "$work"
rm -rf "$work/checkpoint"
half=$((steps / 2))
tokenizer="--tokenizer-type GPT2BPETokenizer --vocab-file $data/bytelevel-bpe-8k/vocab.json --merge-file $data/bytelevel-bpe-8k/merges.txt"

$M preprocess-data --input "$data/docs-3mb.jsonl" --output-prefix "$work/docs" $tokenizer --append-eod --log-interval 100000 \
    > "$logs/preprocess.log" 2>&1 || { cat "$logs/preprocess.log"; echo "preprocess-data failed"; exit 1; }
tail -1 "$logs/preprocess.log"

# 8 x 512 tokens a step: 1,000 steps read ~4M tokens, a few passes over the corpus's ~1M. Dropout off, as
# in the speed runs, so the comparison is about FP8 alone.
model="--num-layers 12 --hidden-size 768 --num-attention-heads 12 --seq-length 512 --max-position-embeddings 512
  --micro-batch-size 8 --global-batch-size 8 --hidden-dropout 0 --attention-dropout 0 --bf16 --deterministic-mode"
schedule="--train-iters $steps --lr 6e-4 --min-lr 6e-5 --lr-decay-style cosine --lr-warmup-iters 100 --weight-decay 0.1
  --clip-grad 1.0 --seed 1234 --log-interval 50 --eval-interval 100 --eval-iters 10"
if [ $smoke = 1 ]; then
    model="--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 64 --max-position-embeddings 64
      --micro-batch-size 4 --global-batch-size 4 --hidden-dropout 0 --attention-dropout 0 --bf16 --deterministic-mode"
    schedule="--train-iters $steps --lr 1e-3 --lr-warmup-iters 5 --seed 1234 --log-interval 5 --eval-interval 10 --eval-iters 2"
fi
run() {   # name, extra flags...
    local name=$1
    shift
    echo "== $name"
    timeout 300 $M pretrain-gpt $model $schedule $tokenizer --data-path "$work/docs_text_document" --split 95,5,0 "$@" \
        > "$logs/$name.log" 2>&1
    echo "exit $? | $(grep -c ' iteration ' "$logs/$name.log") log lines | $(tail -1 "$logs/$name.log")"
}
fp8="--fp8-format hybrid --fp8-recipe delayed"
run bf16
run fp8 $fp8
run fp8-first $fp8 --save "$work/checkpoint" --save-interval $steps --exit-interval $half
run fp8-resumed $fp8 --load "$work/checkpoint"

# "iteration loss" per training log line; "iteration loss" per validation line.
train_losses() { sed -n 's/.* iteration *\([0-9]*\)\/.*| lm loss: \([0-9.E+-]*\) |.*/\1 \2/p' "$logs/$1.log"; }
valid_losses() { sed -n 's/.*validation loss at iteration \([0-9]*\) | lm loss value: \([0-9.E+-]*\) |.*/\1 \2/p' "$logs/$1.log"; }
count() {   # the sum of a log's "number of <what> iterations" fields (each counts its own log interval)
    sed -n "s/.*number of $2 iterations: *\([0-9]*\) .*/\1/p" "$logs/$1.log" | awk '{ s += $1 } END { print s + 0 }'
}

echo
echo "skipped / NaN iterations: bf16 $(count bf16 skipped) / $(count bf16 nan), fp8 $(count fp8 skipped) / $(count fp8 nan)"
final_bf16=$(valid_losses bf16 | tail -1 | cut -d' ' -f2)
final_fp8=$(valid_losses fp8 | tail -1 | cut -d' ' -f2)
echo "final validation loss (step $steps): bf16 ${final_bf16:-none}, fp8 ${final_fp8:-none}"
[ -n "$final_bf16" ] && [ -n "$final_fp8" ] && awk -v b="$final_bf16" -v f="$final_fp8" \
    'BEGIN { d = (f - b) / b * 100; printf "fp8 vs bf16: %+.3f%% (target within 1%%): %s\n", d, (d < 1 && d > -1) ? "met" : "NOT met" }'

# The losses `$1` (train_losses or valid_losses) reads from the three runs, one row a step:
# step, bf16, fp8, fp8/bf16, and the FP8 run stopped at step $half and resumed ("-" where a run has none).
side_by_side() {
    { $1 bf16 | sed 's/^/b /'; $1 fp8 | sed 's/^/f /'; { $1 fp8-first; $1 fp8-resumed; } | sed 's/^/r /'; } | awk '
        function get(run, step) { return ((run, step) in value) ? value[run, step] : "-" }
        { value[$1, $2] = $3; steps[$2] = 1 }
        END {
            for (s in steps) {
                b = get("b", s); f = get("f", s)
                r = (b != "-" && f != "-") ? sprintf("%+.2f%%", (f - b) / b * 100) : "-"
                printf "%6d %12s %12s %9s %12s\n", s, b, f, r, get("r", s)
            }
        }' | sort -n
}

echo
echo "training loss (the mean over the log interval up to each step; a resumed run also logs its first step)"
printf "%6s %12s %12s %9s %12s\n" step bf16 fp8 "fp8/bf16" "fp8 resumed"
side_by_side train_losses
echo
echo "validation loss"
printf "%6s %12s %12s %9s %12s\n" step bf16 fp8 "fp8/bf16" "fp8 resumed"
side_by_side valid_losses

# The resumed run against the uninterrupted one at the steps both logged (the resumed run also logs its first step).
echo
{ train_losses fp8; valid_losses fp8 | sed 's/^/v/'; } > "$work/straight.txt"
{ train_losses fp8-resumed; valid_losses fp8-resumed | sed 's/^/v/'; } | awk -v half=$half '
    FILENAME == ARGV[1] { straight[$1] = $2; next }
    ($1 in straight) { compared++; if ($2 != straight[$1]) { differ++; if (!first) first = $1 " (" $2 " against " straight[$1] ")" } }
    END {
        if (!compared) print "resume: the resumed run logged no loss at a step the uninterrupted run logged"
        else if (differ) printf "resume: %d of %d losses after step %d DIFFER from the uninterrupted run, first at step %s\n", differ, compared, half, first
        else printf "resume: the FP8 run resumed at step %d logged the uninterrupted run'"'"'s losses exactly (%d training and validation losses)\n", half, compared
    }' "$work/straight.txt" -
