#!/usr/bin/env bash
# Builds what a device (GPU machine) call needs, here, since that machine has no Swift toolchain:
#   - the static `megatron` binary (swift build -c release --static-swift-stdlib),
#   - the test bundle MegatronPackageTests.xctest (not static) with its resource bundles and the
#     toolchain's shared libraries that ldd lists under .../usr/lib/swift/linux/,
# packed as one bundle.tar.xz (what travels is capped at 64 MiB) plus scripts/bench_torch_gemm.py.
#
# Usage: scripts/build-gpu.sh [OUT_DIR]      (default: .gpu/ of this checkout; .gpu/ is git-ignored)
#
# On the device, with the output folder named in the call's `carry` (e.g. carry: [".gpu"]):
#   mkdir -p /tmp/g && tar -xJf .gpu/bundle.tar.xz -C /tmp/g
#   /tmp/g/bin/megatron bench gemm
#   LD_LIBRARY_PATH=/tmp/g/lib /tmp/g/bin/MegatronPackageTests.xctest            # whole suite
#   LD_LIBRARY_PATH=/tmp/g/lib /tmp/g/bin/MegatronPackageTests.xctest MegatronCUDATests.GemmGPUTests
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.gpu}
cd "$root"

swift build -c release --static-swift-stdlib --product megatron
swift build --build-tests
release_bin=$(swift build -c release --static-swift-stdlib --show-bin-path)
debug_bin=$(swift build --show-bin-path)
toolchain_libs=$(dirname "$(dirname "$(command -v swift)")")/lib/swift/linux

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
cp "$release_bin/megatron" "$stage/bin/"
cp "$debug_bin/MegatronPackageTests.xctest" "$stage/bin/"
# Resource bundles are looked up next to the test binary.
for bundle in "$debug_bin"/*.resources; do
    [ -e "$bundle" ] && cp -r "$bundle" "$stage/bin/"
done
ldd "$debug_bin/MegatronPackageTests.xctest" | awk -v dir="$toolchain_libs" 'index($3, dir) == 1 { print $3 }' |
    while read -r library; do cp "$library" "$stage/lib/"; done

# Symbols and debug info would take the bundle past what a device call carries (64 MiB with the baseline).
strip --strip-all "$stage/bin/megatron"
strip --strip-debug "$stage/bin/MegatronPackageTests.xctest" "$stage"/lib/*.so* 2>/dev/null || true
mkdir -p "$out"
tar -C "$stage" -cf - bin lib | xz -T0 -6 > "$out/bundle.tar.xz"
cp scripts/bench_torch_gemm.py "$out/"
echo "wrote $out/bundle.tar.xz ($(du -h "$out/bundle.tar.xz" | cut -f1)): $(ls "$stage/bin" | tr '\n' ' ')+ $(ls "$stage/lib" | wc -l) libraries"
