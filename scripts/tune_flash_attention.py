#!/usr/bin/env python3
"""Times the flash-attention kernels (Sources/MegatronCUDA/Kernels/Attention/flash_attention*.cu*) under several
tilings, through CuPy's NVRTC, to choose FA_TILING_D64 / FA_TILING_D128 (and the matching
CUDAKernels.AttentionTiling). Each kernel (forward, dK/dV, dQ) is timed on its own with CUDA
events, bf16, causal, q/k/v/o in the model's [b, s, heads, d] layout.

    python3 scripts/tune_flash_attention.py [--shapes 16x12x1024x64,4x16x2048x128] \
        [--d64 "1,64,1,64,1,64;2,64,2,32,2,32"] [--d128 "2,32,1,32,1,32"]

A tiling is "forward MT, BN, dK/dV MT, BQ, dQ MT, BN" (MT: 16-row tiles per warp; 4 warps a CTA).
"""
import argparse
import glob
import math
import os
import statistics

import cupy as cp
import numpy as np

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "MegatronCUDA", "Kernels")


def source(folder):
    """The flash-attention program's text, its parts found anywhere under `folder` (the op-family folders)."""
    paths = {os.path.basename(p): p for p in glob.glob(os.path.join(folder, "**", "*.cu*"), recursive=True)}
    names = ["common.cuh", "neural.cuh", "fp8.cuh", "flash_attention_masks.cuh", "flash_attention_common.cuh",
             "flash_attention_forward.cuh", "flash_attention_backward.cuh", "flash_attention.cu"]
    return "\n".join(open(paths[name]).read() for name in names)


def median_ms(launch, trials=5, runs=20):
    start, end = cp.cuda.Event(), cp.cuda.Event()
    for _ in range(3):
        launch()
    samples = []
    for _ in range(trials):
        start.record()
        for _ in range(runs):
            launch()
        end.record()
        end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, end) / runs)
    return statistics.median(samples)


def time_tiling(module, tiling, b, h, s, d):
    f_mt, f_bn, kv_mt, kv_bq, q_mt, q_bn = tiling
    row = (d + 8) * 2
    i64, i32, f32 = np.int64, np.int32, np.float32
    # bf16 bits: the high halves of float32 values.
    q, k, v, o, do = (cp.random.uniform(-1, 1, (b, s, h, d), dtype=cp.float32).view(cp.uint32) >> 16 for _ in range(5))
    q, k, v, o, do = (x.astype(cp.uint16) for x in (q, k, v, o, do))
    lse = cp.zeros((b, h, s), cp.float32)
    delta = cp.zeros((b, h, s), cp.float32)
    dq, dk, dv = (cp.empty((b, h, s, d), cp.uint16) for _ in range(3))
    qa = (i64(s * h * d), i64(d), i64(d), i64(h * d))       # batch, group (= head), head-in-group, row
    ka = (i64(s * h * d), i64(d), i64(h * d))
    scale = 1 / math.sqrt(d)
    sizes = (i32(h), i32(1), i32(s), i32(s))
    fwd = module.get_function(f"flash_forward_d{d}_bf16")
    dkdv = module.get_function(f"flash_backward_dkdv_d{d}_bf16")
    dqk = module.get_function(f"flash_backward_dq_d{d}_bf16")
    shared = {"fwd": (64 * f_mt + 4 * f_bn) * row, "dkdv": (2 * 64 * kv_mt + 4 * kv_bq) * row + 16 * kv_bq,
              "dq": (2 * 64 * q_mt + 4 * q_bn) * row}
    for fn, key in ((fwd, "fwd"), (dkdv, "dkdv"), (dqk, "dq")):
        fn.max_dynamic_shared_size_bytes = shared[key]
    fwd_args = (q, *qa, k, *ka, v, *ka, o, *qa, lse) + sizes + (f32(scale * 1.4426950408889634), i32(1))
    bwd_args = (q, *qa, k, *ka, v, *ka, do, *qa, lse, delta)
    tail = sizes + (f32(scale * 1.4426950408889634), f32(scale), i32(1))
    result = {
        "fwd": median_ms(lambda: fwd((math.ceil(s / (64 * f_mt)), h, b), (128,), fwd_args, shared_mem=shared["fwd"])),
        "dkdv": median_ms(lambda: dkdv((math.ceil(s / (64 * kv_mt)), h, b), (128,), bwd_args + (dk, dv) + tail,
                                       shared_mem=shared["dkdv"])),
        "dq": median_ms(lambda: dqk((math.ceil(s / (64 * q_mt)), h, b), (128,), bwd_args + (dq,) + tail, shared_mem=shared["dq"])),
    }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="16x12x1024x64,4x16x2048x128")
    parser.add_argument("--kernels", default=KERNELS, help="folder holding common.cuh, neural.cuh, flash_attention.cu")
    parser.add_argument("--d64", default="1,64,1,64,1,64;2,64,2,32,2,32;1,128,1,128,1,128;2,32,2,32,2,32")
    parser.add_argument("--d128", default="2,32,1,32,1,32;1,64,1,32,1,64;1,64,1,64,1,32;1,32,1,32,1,64")
    args = parser.parse_args()
    d64 = [tuple(int(x) for x in t.split(",")) for t in args.d64.split(";")]
    d128 = [tuple(int(x) for x in t.split(",")) for t in args.d128.split(";")]
    text = source(args.kernels)
    for i in range(max(len(d64), len(d128))):
        t64, t128 = d64[min(i, len(d64) - 1)], d128[min(i, len(d128) - 1)]
        module = cp.RawModule(code=text, options=("--std=c++17", "-default-device", f"-DFA_TILING_D64={','.join(map(str, t64))}",
                                                  f"-DFA_TILING_D128={','.join(map(str, t128))}"))
        for item in args.shapes.split(","):
            b, h, s, d = (int(x) for x in item.split("x"))
            tiling = t64 if d == 64 else t128
            r = time_tiling(module, tiling, b, h, s, d)
            flops = 4.0 * b * h * s * s * d * 0.5
            total = r["fwd"] + r["dkdv"] + r["dq"]
            print(f"{item:<16} tiling {tiling}: fwd {r['fwd']:.3f} ms ({flops / r['fwd'] / 1e9:.0f} TFLOP/s), "
                  f"dkdv {r['dkdv']:.3f}, dq {r['dq']:.3f}, fwd+bwd {total:.3f} ms ({3.5 * flops / total / 1e9:.0f} TFLOP/s)", flush=True)


if __name__ == "__main__":
    main()
