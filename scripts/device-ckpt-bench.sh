#!/usr/bin/env bash
# Issue #20's device acceptance, in one device call (at most 350 s: each part has its timeout): GPT 1.3B (bf16,
# the distributed optimizer's flags, mock data) trained two steps and saved as torch_dist, synchronously and with --async-save; each save's time
# in the training loop (the save-checkpoint timer: the whole save, or the async stall), its wall time to "successfully
# saved", and the peak host / GPU memory while saving (scripts/ckpt_bench.py samples them); then, in the same call,
# torch.distributed.checkpoint.save of the same state in PyTorch (bf16 parameters, fp32 main copies, two Adam moments).
# Targets: sync save at least as fast as DCP's; async stall under 1 s.
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-ckpt-bench.sh [OUT_DIR]        (logs and JSON lines in OUT_DIR, default /tmp/out)
set -uo pipefail
out=${1:-/tmp/out}; mkdir -p "$out"
M=${MEGATRON:-/tmp/g/bin/megatron}
ckpt=${CKPT_DIR:-/tmp/ckpt-bench}
. "$(dirname "$0")/bench-configs.sh"   # gpt13, common
common="$common --use-distributed-optimizer --lr 1e-4 --log-interval 1 --eval-iters 0 --ckpt-format torch_dist"
df -h "$(dirname "$ckpt")" | tail -1
for mode in sync async; do
    rm -rf "$ckpt"
    flags="--train-iters 2 --save-interval 2"
    [ $mode = async ] && flags="--train-iters 3 --save-interval 2 --async-save"
    echo "== ours, $mode save"
    timeout 130 python3 scripts/ckpt_bench.py ours "$out/ckpt-$mode.log" -- $M pretrain-gpt $gpt13 $common $flags --save "$ckpt" \
        | tee "$out/ckpt-$mode.json"
    du -sh "$ckpt"/iter_* 2>/dev/null | head -2
    grep -E "save-checkpoint|saving checkpoint|successfully saved|rror" "$out/ckpt-$mode.log" | head -8
done
rm -rf "$ckpt"
echo "== torch.distributed.checkpoint.save of the same state"
timeout 90 python3 scripts/ckpt_bench.py dcp "$ckpt" | tee "$out/ckpt-dcp.json"
rm -rf "$ckpt"
