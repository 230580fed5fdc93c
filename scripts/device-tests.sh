#!/usr/bin/env bash
# Runs test modules of the GPU bundle (scripts/build-gpu.sh) on the device, the modules side by side (one
# xctest process each, all on the one GPU), so the suite fits a device call. Each module's test classes are
# read from the .swift files under Tests/<module>; the xctest runner takes them as a comma-separated filter.
# With --gpu only the classes that touch the device run (their files call requireGPU, build CUDA objects or
# skip without a device / NVRTC): the CPU-only rest already ran on CI.
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-tests.sh [--gpu] [MODULE ...]      (default: every module under Tests/)
#   e.g. bash scripts/device-tests.sh --gpu MegatronCoreTests MegatronTensorTests
set -uo pipefail
gpu=0
[ "${1:-}" = --gpu ] && { gpu=1; shift; }
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=($(ls Tests | grep -v TestSupport))
out=${OUT:-/tmp}

classes_of() {   # module -> comma-separated Module.Class filter
    local files
    if [ $gpu = 1 ]; then
        files=$(grep -rlE --include="*.swift" 'requireGPU|gpuOrdinals|localCUDA|CUDA(Kernels|Event|Stream|Module)\(|XCTSkip\(.*(GPU|CUDA|NVRTC|device)' Tests/"$1")
    else
        files=$(find Tests/"$1" -name "*.swift")
    fi
    [ -n "$files" ] || return 0
    grep -ho "class [A-Za-z0-9_]*: XCTestCase" $files | awk -v m="$1" '{sub(":", "", $2); print m "." $2}' | sort -u | paste -sd, -
}

pids=()
for module in "${modules[@]}"; do
    classes=$(classes_of "$module")
    [ -n "$classes" ] || continue
    LD_LIBRARY_PATH=/tmp/g/lib /tmp/g/bin/MegatronPackageTests.xctest "$classes" > "$out/tests-$module.log" 2>&1 &
    pids+=("$!:$module")
done
status=0
for entry in "${pids[@]}"; do
    wait "${entry%%:*}" || status=1
    module=${entry#*:}
    echo "$module: $(grep -E "Executed [0-9]+ tests?," "$out/tests-$module.log" | tail -1 | sed 's/^[[:space:]]*//')"
    grep -E "error:|Fatal error" "$out/tests-$module.log" | head -8
done
exit $status
