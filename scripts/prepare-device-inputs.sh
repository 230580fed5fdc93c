#!/usr/bin/env bash
# What the device calls carry besides the build (scripts/build-gpu.sh), gathered here because the device machine
# reaches nothing outside itself and this checkout starts empty of ignored files each session:
#   - .whl/: torchao's wheel for the torch the device holds (2.11, Python 3.12), for scripts/device-fp8-bench.sh's
#     float8 reference (the device README's way of carrying a Python package);
#   - .gpu/data/: the shared corpus and the 8k byte-level BPE, for scripts/device-fp8-convergence.sh.
# Both folders are git-ignored, about 7 MB together; name them in a call's `carry` beside the bundle (a call carries
# 64 MiB with the ~8 MB working tree: the two bundle archives take ~45 MB, 19 MB of it bins.tar.xz).
#   usage (repository root): bash scripts/prepare-device-inputs.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

torchao=torchao==0.17.0   # the release built against torch 2.11
if ! ls .whl/torchao-0.17.0-*.whl >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$torchao"
fi

shared=${SHARED:-$root/../shared}/data   # the workplace's shared folder beside the checkout
mkdir -p .gpu/data
cp "$shared/corpus/docs-3mb.jsonl" .gpu/data/
cp -r "$shared/tokenizers/bytelevel-bpe-8k" .gpu/data/
du -sh .whl .gpu/data
