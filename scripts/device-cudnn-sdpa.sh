#!/usr/bin/env bash
# First device run of the cuDNN SDPA path (never run before this script): finds the libcudnn.so.9 that
# torch's pip packages installed, runs the cuDNN tests of the GPU bundle (scripts/build-gpu.sh), then
# times our kernels, cuDNN through our graphs, and torch's scaled_dot_product_attention on the same shapes.
#   usage (on the device, repository root, bundle unpacked in /tmp/g):
#     bash scripts/device-cudnn-sdpa.sh [SHAPES]        (default: the GPT-2 124M and 1.3B attention shapes)
# cuDNN's own log, when a graph is refused: CUDNN_LOGLEVEL_DBG=3 CUDNN_LOGDEST_DBG=stderr bash scripts/device-cudnn-sdpa.sh
set -uo pipefail
shapes=${1:-16x12x1024x64,4x16x2048x128}
site=$(python3 -c "import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__path__[0]))")
export MEGATRON_CUDNN_PATH=$site/cudnn/lib/libcudnn.so.9
# cuDNN dlopens its sublibraries from its own folder and NVRTC for runtime-compiled engines.
export LD_LIBRARY_PATH=/tmp/g/lib:$site/cudnn/lib:$(ls -d "$site"/cuda_nvrtc/lib 2>/dev/null):${LD_LIBRARY_PATH:-}
echo "cuDNN: $MEGATRON_CUDNN_PATH"
status=0
/tmp/g/bin/MegatronPackageTests.xctest \
    MegatronCUDATests.CuDNNEnumTests,MegatronCUDATests.CuDNNDescriptorTests,MegatronCUDATests.SDPAGraphTests,MegatronCUDATests.CuDNNAttentionGPUTests \
    > "${OUT:-/tmp}/tests-cudnn.log" 2>&1 || status=1
grep -E "cuDNN |relative error|error:|Fatal error|Executed [0-9]+ tests?," "${OUT:-/tmp}/tests-cudnn.log" | head -60
for backend in kernels cudnn; do
    /tmp/g/bin/megatron bench attention --backend "$backend" --shapes "$shapes" || status=1
    /tmp/g/bin/megatron bench attention --backend "$backend" --shapes "$shapes" --full || status=1
done
python3 scripts/bench_torch_attention.py --shapes "$shapes"
python3 scripts/bench_torch_attention.py --shapes "$shapes" --full
exit $status
