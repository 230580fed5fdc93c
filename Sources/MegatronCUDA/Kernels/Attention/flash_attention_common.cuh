// Flash attention (FlashAttention-2's algorithm) for bf16 and fp16, any head dim D that is a multiple
// of 8 up to 256: softmax(q kᵀ * scale + causal mask) v without materializing the [s, t] scores, and
// its backward, optionally with dropout on the probabilities (the `_dropout` kernels).
//
// One NVRTC program per head dim and type (CUDAKernels.programSource): it defines FA_HEAD_DIM, the
// tiling FA_TILING and FA_TYPES before this file; without them (scripts/check_kernels_nvrtc.py) the
// file builds D = 64 for both types. A D that is not a multiple of 16 computes on DP = D rounded up to
// 16: tiles are zero-filled past column D and nothing past it is stored.
//
// Layout (the launcher in CUDAKernels+Attention.swift documents it too): q, o and dO are addressed
// as [batch, group, headInGroup, row, dim] and k, v as [batch, group, row, dim] through strides in
// elements, the last dim contiguous (16-byte aligned rows), so the model's slices of its fused QKV
// projection need no copy. Query head h = group * perGroup + headInGroup reads key/value head `group`
// (grouped-query attention). Causal: query i (of s) sits at key position i + (t - s).
//
// Tensor cores: mma.sync m16n8k16 with fp32 accumulators; fragments come from shared memory tiles
// (row pitch DP + 8 elements, so the eight 16-byte rows of each ldmatrix hit distinct banks)
// filled by cp.async, double-buffered so the next tile loads while this one is multiplied.
// Each CTA has 4 warps; each warp owns MT x 16 rows (queries in the forward and dQ kernels, keys
// in the dK/dV kernel), so every B fragment read from shared memory feeds MT products.
// Softmax runs in the log2 domain (one FFMA folds in the scale, then ex2.approx); the saved
// log-sum-exp is natural-log, [batch, heads, s] fp32.
//
// Backward: one kernel per key block accumulates dK and dV in registers over every query head of
// its group and every query block, in a fixed order. dQ comes one of two ways. By default that same
// kernel also forms dQ's share of its keys (dS K, from dSᵀ staged in shared memory) and adds it to
// an fp32 accumulator with atomics, which a last pass scales and rounds: five products per tile.
// Deterministic mode instead runs a second kernel per query block that accumulates dQ over the key
// blocks in a fixed order, recomputing P and dP: seven products per tile, run-to-run identical.
//
// Dropout (AttentionDropout.swift gives the mask): probability (b, h, i, j) of [batch, heads, s, t] has
// index ((b * heads + h) * s + i) * t + j and is kept iff its Philox uniform is >= p, the numbers of the
// CPU reference, drawn again in the backward. The forward drops P before P V (the row sums and the
// log-sum-exp stay undropped) and folds 1 / (1 - p) into the output; the backward forms
// dV = (P ∘ M)ᵀ dO / (1 - p) and dS = P ∘ (dP ∘ M / (1 - p) - delta).
//
// gpt-oss's attention (AttentionMasking.swift): `window` >= 0 hides the keys before position
// i + (t - s) - window from query i (a sliding window; -1: none), and key blocks wholly outside a block's
// windows are skipped. `sinks` (fp32 [heads], null: none) adds one logit per head to every row's softmax
// denominator, unscaled and with no value: the forward folds it into the row sum and the log-sum-exp, so
// the backward, which recomputes P from that log-sum-exp, needs nothing more (the sinks' own gradient,
// -Σ P_sink · delta, is formed outside these kernels).

#define FA_THREADS 128
#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f
#define POS_INFINITY __int_as_float(0x7f800000)

template <class T> constexpr bool fa_is_bf16 = false;
template <> constexpr bool fa_is_bf16<bf16> = true;

__device__ __forceinline__ unsigned fa_smem_address(const void *p) {
    unsigned address;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(address) : "l"(p));
    return address;
}

// 16 bytes global -> shared without passing through registers; zero-filled when !valid.
__device__ __forceinline__ void fa_cp_async16(void *shared, const void *global, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(fa_smem_address(shared)), "l"(global),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void fa_cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void fa_cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// Rows [row0, row0 + ROWS) of a [rows, D] matrix (row stride `stride`) into a tile of DP columns and
// pitch DP + 8; rows at or past `rows` and columns at or past D are zero-filled. All FA_THREADS threads take part.
template <int D, int DP, int ROWS>
__device__ __forceinline__ void fa_load_tile(unsigned short *tile, const unsigned short *base, long long stride, int row0, int rows) {
    constexpr int CHUNKS = DP / 8, P = DP + 8;
#pragma unroll
    for (int c = threadIdx.x; c < ROWS * CHUNKS; c += FA_THREADS) {
        const int r = c / CHUNKS, col = (c % CHUNKS) * 8;
        const bool valid = row0 + r < rows && (D == DP || col < D);
        fa_cp_async16(tile + r * P + col, valid ? base + (long long)(row0 + r) * stride + col : base, valid);
    }
}

__device__ __forceinline__ void fa_ldmatrix_x4(unsigned (&r)[4], const unsigned short *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fa_smem_address(p)));
}
__device__ __forceinline__ void fa_ldmatrix_x4_trans(unsigned (&r)[4], const unsigned short *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fa_smem_address(p)));
}

// The A operand (16 x 16, row-major) at rows row0.., columns k0.. of a tile of pitch P.
template <int P>
__device__ __forceinline__ void fa_load_a(unsigned (&a)[4], const unsigned short *tile, int row0, int k0) {
    const int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    fa_ldmatrix_x4(a, tile + (row0 + r + (m & 1) * 8) * P + k0 + (m >> 1) * 8);
}

// The A operand (16 x 16) at rows m0.., columns k0.. of Aᵀ stored row-major [k][m] in a tile of pitch P.
template <int P>
__device__ __forceinline__ void fa_load_a_trans(unsigned (&a)[4], const unsigned short *tile, int k0, int m0) {
    const int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    fa_ldmatrix_x4_trans(a, tile + (k0 + (m >> 1) * 8 + r) * P + m0 + (m & 1) * 8);
}

// B operands of two n-tiles (n0 and n0 + 8) of C = A Xᵀ, X row-major [n][k] in a tile of pitch P:
// b[0], b[1] for n-tile n0 and b[2], b[3] for n0 + 8, at k-step k0.
template <int P>
__device__ __forceinline__ void fa_load_bt(unsigned (&b)[4], const unsigned short *tile, int n0, int k0) {
    const int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    fa_ldmatrix_x4(b, tile + (n0 + r + (m >> 1) * 8) * P + k0 + (m & 1) * 8);
}

// B operands of two n-tiles of C = A Y, Y row-major [k][n] in a tile of pitch P (transposed load).
template <int P>
__device__ __forceinline__ void fa_load_b(unsigned (&b)[4], const unsigned short *tile, int k0, int n0) {
    const int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    fa_ldmatrix_x4_trans(b, tile + (k0 + r + (m & 1) * 8) * P + n0 + (m >> 1) * 8);
}

template <class T>
__device__ __forceinline__ void fa_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    if constexpr (fa_is_bf16<T>) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// Two floats rounded to T and packed, `lo` in the low half.
template <class T> __device__ __forceinline__ unsigned fa_pack(float lo, float hi) {
    unsigned r;
    if constexpr (fa_is_bf16<T>) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    else asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// The A operand of a product from accumulators: n-tiles 2kk and 2kk + 1 of a 16-row result (C
// layout) are the 16 x 16 A fragment of k-step kk.
template <class T, int N>
__device__ __forceinline__ void fa_accumulator_as_a(unsigned (&a)[4], const float (&c)[N][4], int kk) {
    a[0] = fa_pack<T>(c[2 * kk][0], c[2 * kk][1]);
    a[1] = fa_pack<T>(c[2 * kk][2], c[2 * kk][3]);
    a[2] = fa_pack<T>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    a[3] = fa_pack<T>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// C[MT x 16 x N*8] += A Xᵀ: A is MT 16-row tiles from rows row0.. of tile `a` (pitch P, D columns),
// X rows 0.. of tile `x`. Each B fragment loaded feeds MT products, which is what keeps the
// shared-memory traffic per multiply down.
template <class T, int D, int N, int P, int MT>
__device__ __forceinline__ void fa_gemm_abt(float (&c)[MT][N][4], const unsigned short *a_tile, int row0, const unsigned short *x_tile) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        unsigned a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) fa_load_a<P>(a[mt], a_tile, row0 + mt * 16, kk * 16);
#pragma unroll
        for (int nt = 0; nt < N / 2; nt++) {
            unsigned b[4];
            fa_load_bt<P>(b, x_tile, nt * 16, kk * 16);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                fa_mma<T>(c[mt][2 * nt], a[mt], b[0], b[1]);
                fa_mma<T>(c[mt][2 * nt + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

// C[MT x 16 x D] += A Y with A = accumulators `p` [MT x 16 x K*8] rounded to T, Y rows 0.. of tile `y` [K*8 x D].
template <class T, int D, int K, int P, int MT>
__device__ __forceinline__ void fa_gemm_pv(float (&c)[MT][D / 8][4], const float (&p)[MT][K][4], const unsigned short *y_tile) {
#pragma unroll
    for (int kk = 0; kk < K / 2; kk++) {
        unsigned a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) fa_accumulator_as_a<T>(a[mt], p[mt], kk);
#pragma unroll
        for (int nt = 0; nt < D / 16; nt++) {
            unsigned b[4];
            fa_load_b<P>(b, y_tile, kk * 16, nt * 16);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                fa_mma<T>(c[mt][2 * nt], a[mt], b[0], b[1]);
                fa_mma<T>(c[mt][2 * nt + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

// 2^x in one MUFU instruction (exp2f adds range fix-ups for denormal results, which the
// probabilities do not need); 2^-inf = 0.
__device__ __forceinline__ float fa_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ float fa_quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float fa_quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Writes this warp's MT x 16 accumulator rows (row r of tile mt times scale[mt][r]) to rows row0..
// of a [rows, D] matrix (the accumulators' columns past D, DP - D of them, are not stored).
template <class T, int D, int DP, int MT>
__device__ __forceinline__ void fa_store_rows(unsigned short *base, long long stride, int row0, int rows,
                                              const float (&c)[MT][DP / 8][4], const float (&scale)[MT][2]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = row0 + mt * 16 + g + r * 8;
            if (row >= rows) continue;
            unsigned short *out = base + (long long)row * stride + tq * 2;
#pragma unroll
            for (int nt = 0; nt < D / 8; nt++)
                *reinterpret_cast<unsigned *>(out + nt * 8) =
                    fa_pack<T>(c[mt][nt][2 * r] * scale[mt][r], c[mt][nt][2 * r + 1] * scale[mt][r]);
        }
}

