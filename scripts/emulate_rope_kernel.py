#!/usr/bin/env python3
"""Runs Sources/MegatronCUDA/Kernels/Rope/rope.cu on the host, without a GPU: the kernel body compiled with
g++ behind small shims (thread indices as globals, fp32 loads), every (block, thread) of a launch run
in turn, the result checked against a numpy rotary embedding. It exercises the kernel's row
decomposition, strides, per-row tables, the vectorized and element-wise paths and the grid-stride
loop with the launch geometry CUDAKernels+Rope.swift and CUDARotary.swift choose.

    pip install numpy
    python3 scripts/emulate_rope_kernel.py
"""
import itertools
import os
import subprocess
import sys
import tempfile

import numpy as np

KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "MegatronCUDA", "Kernels", "Rope", "rope.cu")

HARNESS = r"""
#include <cmath>
#include <cstdio>
#include <vector>
#define __device__
#define __global__
#define __forceinline__ inline
struct Dim { unsigned x, y, z; };
Dim threadIdx, blockIdx, blockDim, gridDim;
inline float to_float(float x) { return x; }
template <class T> T from_float(float x) { return x; }
template <class T> void load8(const T *p, float (&v)[8]) { for (int k = 0; k < 8; k++) v[k] = p[k]; }
template <class T> void store8(T *p, const float (&v)[8]) { for (int k = 0; k < 8; k++) p[k] = v[k]; }
#define FOR_EACH_FLOAT_TYPE(MACRO) MACRO(f32, float)
#include "rope_body.cu"
int main() {
    long long o0, o1, o2, seq, hd, rd, s0, s1, s2, ss, ts, bw, vec, bx, by, grid, nx, nt;
    if (scanf("%lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", &o0, &o1, &o2,
              &seq, &hd, &rd, &s0, &s1, &s2, &ss, &ts, &bw, &vec, &bx, &by, &grid, &nx, &nt) != 18) return 1;
    std::vector<float> x(nx), c(nt), s(nt), out(o0 * o1 * o2 * seq * hd, NAN);
    for (auto &v : x) if (scanf("%f", &v) != 1) return 1;
    for (auto &v : c) if (scanf("%f", &v) != 1) return 1;
    for (auto &v : s) if (scanf("%f", &v) != 1) return 1;
    blockDim = {(unsigned)bx, (unsigned)by, 1};
    gridDim = {(unsigned)grid, 1, 1};
    for (unsigned b = 0; b < grid; b++) for (unsigned ty = 0; ty < by; ty++) for (unsigned tx = 0; tx < bx; tx++) {
        blockIdx = {b, 0, 0};
        threadIdx = {tx, ty, 0};
        rope_f32(out.data(), x.data(), c.data(), s.data(), o0, o1, o2, seq, hd, rd, o0 * o1 * o2 * seq, s0, s1, s2, ss, ts,
                 bw, vec);
    }
    for (float v : out) printf("%.9g\n", v);
}
"""


def reference(x, cos, sin, backward):
    """Megatron's rotation of the logical x [..., seq, d] by [seq, r] or [batch, seq, r] tables."""
    r = cos.shape[-1]
    h = r // 2
    if cos.ndim == 3:
        shape = (x.shape[0],) + (1,) * (x.ndim - 3) + cos.shape[1:]
        cos, sin = cos.reshape(shape), sin.reshape(shape)
    a, b = x[..., :h], x[..., h:r]
    ca, cb, sa, sb = cos[..., :h], cos[..., h:], sin[..., :h], sin[..., h:]
    first, second = (a * ca + b * sb, b * cb - a * sa) if backward else (a * ca - b * sa, b * cb + a * sb)
    return np.concatenate([first, second, x[..., r:]], axis=-1)


def launch(binary, storage, shape, strides, offset, cos, sin, backward, grid=3):
    """The launch CUDARotary / CUDAKernels.rotaryEmbedding make for this view, run on the host."""
    lead = len(shape) - 2
    outer = list(shape[:lead]) + [1] * (3 - lead)
    row_strides = list(strides[:lead]) + [0] * (3 - lead) + [strides[lead]]
    seq, d, r = shape[-2], shape[-1], cos.shape[-1]
    table_stride = seq * r if cos.ndim == 3 else 0
    vectorized = ((r // 2) % 8 == 0 and (d - r) % 8 == 0 and offset % 4 == 0
                  and all(v % 8 == 0 for v in row_strides + [table_stride]))
    lanes = min(256, (r // 2 + d - r) // (8 if vectorized else 1))
    rows_per_block = max(1, 256 // lanes)
    x = storage[offset:]
    header = outer + [seq, d, r] + row_strides + [table_stride, int(backward), int(vectorized), lanes, rows_per_block,
                                                  grid, x.size, cos.size]
    text = "\n".join([" ".join(map(str, header))] + [" ".join(repr(float(v)) for v in t.ravel()) for t in (x, cos, sin)])
    out = subprocess.run([binary], input=text, capture_output=True, text=True, check=True).stdout.split()
    logical = np.lib.stride_tricks.as_strided(x, shape=shape, strides=[s * 4 for s in strides])
    expected = reference(logical.astype(np.float64), cos.astype(np.float64), sin.astype(np.float64), backward)
    return np.abs(np.array(out, dtype=np.float64).reshape(shape) - expected).max(), vectorized


def main():
    workdir = tempfile.mkdtemp(prefix="rope-emulation-")
    with open(KERNEL, encoding="utf-8") as f:
        body = f.read().replace('extern "C" ', "")
    with open(os.path.join(workdir, "rope_body.cu"), "w") as f:
        f.write(body)
    with open(os.path.join(workdir, "harness.cpp"), "w") as f:
        f.write(HARNESS)
    binary = os.path.join(workdir, "harness")
    subprocess.run(["g++", "-std=c++17", "-O1", "-o", binary, os.path.join(workdir, "harness.cpp")], check=True)

    rng = np.random.default_rng(0)
    cases = vectorized_cases = 0
    b, g, p = 2, 2, 3
    for s, d, percent, per_row, backward in itertools.product([5, 37], [64, 12, 16], [1, 0.5], [False, True], [False, True]):
        r = int(d * percent)
        if r % 2:
            continue
        # q [b, g, p, s, d] and k [b, g, 1, s, d] as views of a fused QKV tensor [b, s, g, p + 2, d].
        qkv = rng.standard_normal(b * s * g * (p + 2) * d + 8).astype(np.float32)
        view = [s * g * (p + 2) * d, (p + 2) * d, d, g * (p + 2) * d, 1]
        tables = (b, s, r) if per_row else (s, r)
        cos, sin = (rng.standard_normal(tables).astype(np.float32) for _ in range(2))
        operands = [((b, g, p, s, d), view, 0), ((b, g, 1, s, d), view, p * d),
                    ((b, g * p, s, d), [s * g * p * d, s * d, d, 1], 0)]
        if not per_row:
            operands.append(((s, d), [3 * d + 8, 1], 0))   # rows with a gap between them
        for shape, strides, offset in operands:
            error, vectorized = launch(binary, qkv, shape, strides, offset, cos, sin, backward)
            if error > 1e-5:
                sys.exit(f"FAIL shape {shape} d {d} rotary {r} per-row {per_row} backward {backward}: max error {error}")
            cases += 1
            vectorized_cases += vectorized
    print(f"ok: {cases} launches ({vectorized_cases} vectorized) match the numpy reference")


if __name__ == "__main__":
    main()
