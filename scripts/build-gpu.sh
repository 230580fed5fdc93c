#!/usr/bin/env bash
# Builds what a device (GPU machine) call needs, here, since that machine has no Swift toolchain:
#   - bins.tar.xz: the static `megatron` binary (swift build -c release --static-swift-stdlib), and with
#     BASELINE=FILE (an earlier build: a megatron binary or FILE.xz) that build as megatron-baseline, packed
#     together in one solid stream: the two static binaries share most of their bytes (Foundation, ICU data),
#     so the baseline adds a few MB instead of ~17;
#   - tests.tar.xz: the test bundle MegatronPackageTests.xctest (not static) with its resource bundles and the
#     toolchain's shared libraries that ldd lists under .../usr/lib/swift/linux/.
# Build in the checkout the device call runs from (/work/main): the tests find their fixtures by the source path
# they were compiled at (#filePath), so a bundle built in another worktree misses every fixture there.
# What a call carries is capped at 64 MiB with the working tree (~7 MB): both archives together stay near 45 MB.
#
# Usage: [BASELINE=FILE[.xz]] scripts/build-gpu.sh [OUT_DIR]   (default: .gpu/ of this checkout; git-ignored)
#
# On the device, with the output folder named in the call's `carry` (e.g. carry: [".gpu/s5"]):
#   mkdir -p /tmp/g && tar -xJf .gpu/s5/tests.tar.xz -C /tmp/g && tar -xJf .gpu/s5/bins.tar.xz -C /tmp/g/bin
#   /tmp/g/bin/megatron bench gemm
#   bash scripts/device-tests.sh --gpu                                        # the device's test classes
#   bash scripts/device-train-bench.sh --baseline /tmp/g/bin/megatron-baseline   # before / after
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
mkdir -p "$stage/tests/bin" "$stage/tests/lib" "$stage/bins"
cp "$debug_bin/MegatronPackageTests.xctest" "$stage/tests/bin/"
# Resource bundles are looked up next to the test binary.
for bundle in "$debug_bin"/*.resources; do
    [ -e "$bundle" ] && cp -r "$bundle" "$stage/tests/bin/"
done
ldd "$debug_bin/MegatronPackageTests.xctest" | awk -v dir="$toolchain_libs" 'index($3, dir) == 1 { print $3 }' |
    while read -r library; do cp "$library" "$stage/tests/lib/"; done
# Symbols and debug info would take the archives past what a device call carries.
strip --strip-debug "$stage/tests/bin/MegatronPackageTests.xctest" "$stage"/tests/lib/*.so* 2>/dev/null || true

cp "$release_bin/megatron" "$stage/bins/"
strip --strip-all "$stage/bins/megatron"
case ${BASELINE:-} in
    "") ;; *.xz) xz -dc "$BASELINE" > "$stage/bins/megatron-baseline" ;; *) cp "$BASELINE" "$stage/bins/megatron-baseline" ;;
esac

mkdir -p "$out"
tar -C "$stage/tests" -cf - bin lib | xz -T0 -9 > "$out/tests.tar.xz"
# One LZMA window over both binaries: the dictionary must span the first one (~66 MB) for the second to match it.
tar -C "$stage/bins" -cf - . | xz -T1 --lzma2=preset=9,dict=192MiB > "$out/bins.tar.xz"
echo "wrote $out: $(du -h "$out/tests.tar.xz" | cut -f1) tests.tar.xz ($(ls "$stage/tests/bin" | tr '\n' ' ')+ $(ls "$stage/tests/lib" | wc -l) libraries), $(du -h "$out/bins.tar.xz" | cut -f1) bins.tar.xz ($(ls "$stage/bins" | tr '\n' ' '))"
