#!/usr/bin/env bash
# Runs test modules of the GPU bundle (scripts/build-gpu.sh) on the device, one module at a time, so a
# suite longer than one device call can be split across calls. Each module's test classes are read
# from the .swift files under Tests/<module>; the xctest runner takes them as a comma-separated filter.
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-tests.sh [MODULE ...]      (default: every module under Tests/)
#   e.g. bash scripts/device-tests.sh MegatronCoreTests MegatronTensorTests
set -uo pipefail
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=($(ls Tests))
status=0
for module in "${modules[@]}"; do
    classes=$(grep -rho --include="*.swift" "class [A-Za-z0-9_]*: XCTestCase" Tests/"$module" | awk -v m="$module" '{sub(":", "", $2); print m "." $2}' | paste -sd, -)
    log=${OUT:-/tmp}/tests-$module.log
    LD_LIBRARY_PATH=/tmp/g/lib /tmp/g/bin/MegatronPackageTests.xctest "$classes" > "$log" 2>&1 || status=1
    echo "$module: $(grep -E "Executed [0-9]+ tests?," "$log" | tail -1 | sed 's/^[[:space:]]*//')"
    grep -E "error:|Fatal error" "$log" | head -5
done
exit $status
