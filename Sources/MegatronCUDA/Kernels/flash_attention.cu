// Flash attention (FlashAttention-2's algorithm) for bf16 and fp16, any head dim D that is a multiple
// of 8 up to 256: softmax(q kᵀ * scale + causal mask) v without materializing the [s, t] scores, and
// its backward, optionally with dropout on the probabilities (the `_dropout` kernels).
//
// One NVRTC program per head dim and type (NeuralKernels.programSource): it defines FA_HEAD_DIM, the
// tiling FA_TILING and FA_TYPES before this file; without them (scripts/check_kernels_nvrtc.py) the
// file builds D = 64 for both types. A D that is not a multiple of 16 computes on DP = D rounded up to
// 16: tiles are zero-filled past column D and nothing past it is stored.
//
// Layout (the launcher in NeuralKernels+Attention.swift documents it too): q, o and dO are addressed
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

// ---------------------------------------------------------------------------------------------
// Forward: each warp owns MT x 16 query rows, the CTA 4 x MT x 16; BN keys per step.
// Grid (ceil(s / rows per CTA), heads, batch); heavy causal query blocks start first.
template <class T, int D, int MT, int BN, bool DROPOUT>
__device__ void flash_forward(const T *q, long long q_b, long long q_g, long long q_p, long long q_s,
                              const T *k, long long k_b, long long k_g, long long k_s,
                              const T *v, long long v_b, long long v_g, long long v_s,
                              T *o, long long o_b, long long o_g, long long o_p, long long o_s,
                              float *lse, int groups, int per_group, int s, int t, float scale_log2, int causal,
                              float dropout_p, float dropout_scale, unsigned long long philox_seed, unsigned long long philox_offset,
                              int window, const float *sinks) {
    constexpr int DP = (D + 15) / 16 * 16, P = DP + 8, WM = 16 * MT, BM = 4 * WM, NT = BN / 8;
    extern __shared__ __align__(16) unsigned char fa_shared[];
    unsigned short *qs = reinterpret_cast<unsigned short *>(fa_shared);
    unsigned short *ks = qs + BM * P;          // [2][BN][P]
    unsigned short *vs = ks + 2 * BN * P;      // [2][BN][P]

    const int q0 = (gridDim.x - 1 - blockIdx.x) * BM, h = blockIdx.y, b = blockIdx.z;
    const int group = h / per_group, p = h % per_group, offset = t - s;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const unsigned short *qh = reinterpret_cast<const unsigned short *>(q) + b * q_b + group * q_g + p * q_p;
    const unsigned short *kh = reinterpret_cast<const unsigned short *>(k) + b * k_b + group * k_g;
    const unsigned short *vh = reinterpret_cast<const unsigned short *>(v) + b * v_b + group * v_g;
    const int blocks = (fa_key_end(q0, BM, s, t, causal) + BN - 1) / BN, first = fa_key_begin(q0, s, t, window) / BN;
    const FaDropout drop = fa_dropout(dropout_p, dropout_scale, philox_seed, philox_offset, ((long long)b * gridDim.y + h) * s, t);

    fa_load_tile<D, DP, BM>(qs, qh, q_s, q0, s);
    fa_load_tile<D, DP, BN>(ks + (first & 1) * BN * P, kh, k_s, first * BN, t);
    fa_load_tile<D, DP, BN>(vs + (first & 1) * BN * P, vh, v_s, first * BN, t);
    fa_cp_async_commit();

    float acc[MT][DP / 8][4] = {};
    float row_max[MT][2], row_sum[MT][2] = {};
#pragma unroll
    for (int mt = 0; mt < MT; mt++) row_max[mt][0] = row_max[mt][1] = NEG_INFINITY;
    const int row_a = q0 + warp * WM + g;   // this thread's query rows: row_a + mt * 16 + r * 8

    for (int j = first; j < blocks; j++) {
        if (j + 1 < blocks) {
            fa_load_tile<D, DP, BN>(ks + ((j + 1) & 1) * BN * P, kh, k_s, (j + 1) * BN, t);
            fa_load_tile<D, DP, BN>(vs + ((j + 1) & 1) * BN * P, vh, v_s, (j + 1) * BN, t);
            fa_cp_async_commit();
            fa_cp_async_wait<1>();
        } else {
            fa_cp_async_wait<0>();
        }
        __syncthreads();
        const unsigned short *kt = ks + (j & 1) * BN * P, *vt = vs + (j & 1) * BN * P;

        float sc[MT][NT][4] = {};
        fa_gemm_abt<T, DP, NT, P, MT>(sc, qs, warp * WM, kt);

        // Only blocks crossing the diagonal, a window's edge or the end of the keys need a mask (on the raw scores).
        const int k0 = j * BN;
        if (k0 + BN > t || (causal && k0 + BN - 1 > q0 + offset) || (window >= 0 && k0 < q0 + BM - 1 + offset - window)) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int key = k0 + nt * 8 + tq * 2 + (e & 1), row = row_a + mt * 16 + (e >> 1) * 8;
                        if (fa_hidden(key, row, offset, t, causal, window)) sc[mt][nt][e] = NEG_INFINITY;
                    }
        }
        // row_max is kept scaled (log2 domain): max(scale * x) = scale * max(x) for scale > 0.
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float m = NEG_INFINITY;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) m = fmaxf(m, fmaxf(sc[mt][nt][2 * r], sc[mt][nt][2 * r + 1]));
                m = fmaxf(row_max[mt][r], fa_quad_max(m) * scale_log2);
                // A row with nothing visible yet keeps max -inf; exponentiate against 0 so 2^-inf = 0, not NaN.
                const float base = m == NEG_INFINITY ? 0.0f : m;
                const float rescale = fa_exp2(row_max[mt][r] - base);
                row_max[mt][r] = m;
                row_sum[mt][r] *= rescale;
#pragma unroll
                for (int nt = 0; nt < DP / 8; nt++) {
                    acc[mt][nt][2 * r] *= rescale;
                    acc[mt][nt][2 * r + 1] *= rescale;
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    sc[mt][nt][2 * r] = fa_exp2(fmaf(sc[mt][nt][2 * r], scale_log2, -base));
                    sc[mt][nt][2 * r + 1] = fa_exp2(fmaf(sc[mt][nt][2 * r + 1], scale_log2, -base));
                    row_sum[mt][r] += sc[mt][nt][2 * r] + sc[mt][nt][2 * r + 1];
                }
            }
        if constexpr (DROPOUT) {   // after the row sums, which normalize by every probability
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const unsigned keep = fa_keep_bits_rows(drop, row_a + mt * 16, k0 + nt * 8);
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (!(keep >> e & 1)) sc[mt][nt][e] = 0.0f;
                }
        }
        fa_gemm_pv<T, DP, NT, P, MT>(acc, sc, vt);
        __syncthreads();   // the next iteration's loads overwrite the tiles just read
    }

    float inverse[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float total = fa_quad_sum(row_sum[mt][r]), factor = 1.0f;
            if (sinks) {   // the sink joins the denominator; rescale to max(row max, sink) so neither overflows
                const float sink = sinks[h] * FA_LOG2E, m = fmaxf(row_max[mt][r], sink);
                factor = fa_exp2(row_max[mt][r] - m);
                total = total * factor + fa_exp2(sink - m);
                row_max[mt][r] = m;
            }
            inverse[mt][r] = total > 0.0f ? (DROPOUT ? drop.scale : 1.0f) * factor / total : 0.0f;
            const int row = row_a + mt * 16 + r * 8;
            if (tq == 0 && row < s)
                lse[((long long)b * gridDim.y + h) * s + row] = total > 0.0f ? (row_max[mt][r] + log2f(total)) * FA_LN2 : NEG_INFINITY;
        }
    unsigned short *oh = reinterpret_cast<unsigned short *>(o) + b * o_b + group * o_g + p * o_p;
    fa_store_rows<T, D, DP, MT>(oh, o_s, q0 + warp * WM, s, acc, inverse);
}

// ---------------------------------------------------------------------------------------------
// Backward preprocessing: delta[b, h, i] = sum_d dO * O, one warp per row. Grid (ceil(heads * s / 4), batch).
template <class T>
__device__ void flash_backward_delta(const T *o, long long o_b, long long o_g, long long o_p, long long o_s,
                                     const T *dout, long long d_b, long long d_g, long long d_p, long long d_s,
                                     float *delta, int groups, int per_group, int s, int dim) {
    const int row = blockIdx.x * (FA_THREADS / 32) + (threadIdx.x >> 5), lane = threadIdx.x & 31, b = blockIdx.y;
    const int heads = groups * per_group;
    if (row >= heads * s) return;
    const int i = row % s, h = row / s, group = h / per_group, p = h % per_group;
    const T *orow = o + b * o_b + group * o_g + p * o_p + i * o_s;
    const T *drow = dout + b * d_b + group * d_g + p * d_p + i * d_s;
    float sum = 0.0f;
    for (int c = lane; c < dim; c += 32) sum += to_float(orow[c]) * to_float(drow[c]);
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) delta[(long long)b * heads * s + row] = sum;
}

// dQ's rows for one query head from the staged dSᵀ: dq_acc[q0 + i, :] += sum over the CTA's BN keys
// of dS[i, key] K[key, :] (dq_acc rows of D floats). Warp w takes query tile w % (BQ / 16) and every
// (4 / (BQ / 16))-th pair of 8-column tiles from pair w / (BQ / 16) on.
template <class T, int D, int DP, int BN, int BQ, int P, int PQ>
__device__ __forceinline__ void fa_add_dq(float *dq_rows, int q0, int s, const unsigned short *dst, const unsigned short *ks) {
    constexpr int QT = BQ / 16, PARTS = 4 / QT, PAIRS = DP / 16, MINE = (PAIRS + PARTS - 1) / PARTS;
    static_assert(QT * PARTS == 4, "dQ tiles must divide among 4 warps");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int qt = warp % QT, part = warp / QT;
    float acc[2 * MINE][4] = {};
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
        unsigned a[4];
        fa_load_a_trans<PQ>(a, dst, kk * 16, qt * 16);
#pragma unroll
        for (int i = 0; i < MINE; i++) {
            const int pair = part + i * PARTS;
            if (pair < PAIRS) {   // the same for the whole warp
                unsigned bf[4];
                fa_load_b<P>(bf, ks, kk * 16, pair * 16);
                fa_mma<T>(acc[2 * i], a, bf[0], bf[1]);
                fa_mma<T>(acc[2 * i + 1], a, bf[2], bf[3]);
            }
        }
    }
    // Lane pairs (tq, tq ^ 1) swap halves so each holds four adjacent columns of one row: the even lane
    // row g, columns 2tq..2tq+3; the odd lane row g + 8, columns 2tq-2..2tq+1. One 16-byte atomic
    // (sm_90) then does the work of four.
    const bool odd = tq & 1;
    const int row = q0 + qt * 16 + g + (odd ? 8 : 0), c = (tq & 2) * 2;
#pragma unroll
    for (int nt = 0; nt < 2 * MINE; nt++) {
        const float give0 = odd ? acc[nt][0] : acc[nt][2], give1 = odd ? acc[nt][1] : acc[nt][3];
        const float got0 = __shfl_xor_sync(0xffffffffu, give0, 1), got1 = __shfl_xor_sync(0xffffffffu, give1, 1);
        const float4 sum = odd ? make_float4(got0, got1, acc[nt][2], acc[nt][3]) : make_float4(acc[nt][0], acc[nt][1], got0, got1);
        const int column = (part + (nt / 2) * PARTS) * 16 + (nt % 2) * 8;   // DP - D padding columns are not stored
        if (row < s && column < D) atomicAdd(reinterpret_cast<float4 *>(dq_rows + (long long)row * D + column + c), sum);
    }
}

// This warp's accumulator rows (MT x 16 keys from row0, NT x 8 query columns) rounded to T into a
// tile of pitch PQ: the transpose the dQ product reads as its A operand.
template <class T, int MT, int NT, int PQ>
__device__ __forceinline__ void fa_stage_transposed(unsigned short *tile, int row0, const float (&c)[MT][NT][4]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                *reinterpret_cast<unsigned *>(tile + (row0 + mt * 16 + g + r * 8) * PQ + nt * 8 + tq * 2) =
                    fa_pack<T>(c[mt][nt][2 * r], c[mt][nt][2 * r + 1]);
}

// ---------------------------------------------------------------------------------------------
// dK and dV of one block of 4 x MT x 16 keys of one key/value head (each warp owns MT x 16 keys),
// summed over the group's query heads and every query block that sees these keys.
// Grid (ceil(t / keys per CTA), groups, batch). BQ queries per step. dk, dv: addressed like k and v.
// With ATOMIC_DQ it also adds (dS K) over these keys to dq_acc, fp32 contiguous [batch, heads, s, D]
// (unscaled; flash_backward_dq_finalize applies the scale). With DROPOUT, P is dropped as the forward did.
template <class T, int D, int MT, int BQ, bool ATOMIC_DQ, bool DROPOUT>
__device__ void flash_backward_dkdv(const T *q, long long q_b, long long q_g, long long q_p, long long q_s,
                                    const T *k, long long k_b, long long k_g, long long k_s,
                                    const T *v, long long v_b, long long v_g, long long v_s,
                                    const T *dout, long long d_b, long long d_g, long long d_p, long long d_s,
                                    const float *lse, const float *delta,
                                    T *dk, long long dk_b, long long dk_g, long long dk_s,
                                    T *dv, long long dv_b, long long dv_g, long long dv_s, float *dq_acc,
                                    int groups, int per_group, int s, int t, float scale_log2, float scale, int causal,
                                    float dropout_p, float dropout_scale, unsigned long long philox_seed, unsigned long long philox_offset,
                                    int window) {
    constexpr int DP = (D + 15) / 16 * 16, P = DP + 8, WN = 16 * MT, BN = 4 * WN, NT = BQ / 8, PQ = BQ + 8;
    extern __shared__ __align__(16) unsigned char fa_shared[];
    unsigned short *ks = reinterpret_cast<unsigned short *>(fa_shared);
    unsigned short *vs = ks + BN * P;
    unsigned short *qs = vs + BN * P;          // [2][BQ][P]
    unsigned short *dos = qs + 2 * BQ * P;     // [2][BQ][P]
    float *lses = reinterpret_cast<float *>(dos + 2 * BQ * P);   // [2][BQ], log2 domain
    float *deltas = lses + 2 * BQ;                               // [2][BQ]
    unsigned short *dst = reinterpret_cast<unsigned short *>(deltas + 2 * BQ);   // dSᵀ [BN][PQ] (ATOMIC_DQ)

    const int k0 = blockIdx.x * BN, group = blockIdx.y, b = blockIdx.z, offset = t - s, heads = groups * per_group;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const unsigned short *kh = reinterpret_cast<const unsigned short *>(k) + b * k_b + group * k_g;
    const unsigned short *vh = reinterpret_cast<const unsigned short *>(v) + b * v_b + group * v_g;
    // Queries before k0 - offset see none of these keys, nor (with a window) those after k0 + BN - 1 - offset + window.
    const int first = causal ? max(0, k0 - offset) / BQ : 0;
    const int query_blocks = (s + BQ - 1) / BQ, last = k0 + BN - 1 - offset + window;
    const int end = window < 0 ? query_blocks : last < 0 ? 0 : min(query_blocks, last / BQ + 1);
    const int per_head = max(0, end - first), steps = per_group * per_head;

    // Queues step `step`'s query tile, output-gradient tile and per-row statistics into buffer `buffer`.
    auto load_step = [&](int step, int buffer) {
        const int p = step / per_head, q0 = (first + step % per_head) * BQ;
        const unsigned short *qh = reinterpret_cast<const unsigned short *>(q) + b * q_b + group * q_g + p * q_p;
        const unsigned short *dh = reinterpret_cast<const unsigned short *>(dout) + b * d_b + group * d_g + p * d_p;
        fa_load_tile<D, DP, BQ>(qs + buffer * BQ * P, qh, q_s, q0, s);
        fa_load_tile<D, DP, BQ>(dos + buffer * BQ * P, dh, d_s, q0, s);
        const long long rows = ((long long)b * heads + group * per_group + p) * s;
        for (int r = threadIdx.x; r < BQ; r += FA_THREADS) {
            const bool valid = q0 + r < s;
            lses[buffer * BQ + r] = valid ? lse[rows + q0 + r] * FA_LOG2E : POS_INFINITY;
            deltas[buffer * BQ + r] = valid ? delta[rows + q0 + r] : 0.0f;
        }
    };

    fa_load_tile<D, DP, BN>(ks, kh, k_s, k0, t);
    fa_load_tile<D, DP, BN>(vs, vh, v_s, k0, t);
    if (steps > 0) load_step(0, 0);
    fa_cp_async_commit();

    float dk_acc[MT][DP / 8][4] = {}, dv_acc[MT][DP / 8][4] = {};
    const int key_a = k0 + warp * WN + g;   // this thread's keys: key_a + mt * 16 + r * 8
    FaDropout drop = fa_dropout(dropout_p, dropout_scale, philox_seed, philox_offset, 0, t);

    for (int step = 0; step < steps; step++) {
        const int buffer = step & 1;
        if (step + 1 < steps) {
            load_step(step + 1, buffer ^ 1);
            fa_cp_async_commit();
            fa_cp_async_wait<1>();
        } else {
            fa_cp_async_wait<0>();
        }
        __syncthreads();
        const int q0 = (first + step % per_head) * BQ;
        const unsigned short *qt = qs + buffer * BQ * P, *dt = dos + buffer * BQ * P;
        const float *lt = lses + buffer * BQ, *deltat = deltas + buffer * BQ;

        float pt[MT][NT][4] = {};   // Pᵀ: this warp's keys x BQ queries
        fa_gemm_abt<T, DP, NT, P, MT>(pt, ks, warp * WN, qt);
        // Only steps whose first query precedes this warp's last key cross the diagonal, and only those
        // whose last query's window starts past this warp's first key cross a window's edge.
        const bool diagonal = (causal && k0 + warp * WN + WN - 1 > q0 + offset)
                              || (window >= 0 && k0 + warp * WN < q0 + BQ - 1 + offset - window);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = nt * 8 + tq * 2 + (e & 1), key = key_a + mt * 16 + (e >> 1) * 8;
                    const float p = fa_exp2(fmaf(pt[mt][nt][e], scale_log2, -lt[col]));
                    pt[mt][nt][e] = diagonal && fa_hidden(key, q0 + col, offset, t, causal, window) ? 0.0f : p;
                }
        float dpt[MT][NT][4] = {};  // dPᵀ = V dOᵀ
        if constexpr (DROPOUT) {
            // dSᵀ = Pᵀ ∘ (dPᵀ ∘ Mᵀ / (1 - p) - delta) first, then Pᵀ ∘ Mᵀ in place for dV (scaled at the end).
            fa_gemm_abt<T, DP, NT, P, MT>(dpt, vs, warp * WN, dt);
            drop.head_rows = ((long long)b * heads + group * per_group + step / per_head) * s;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const unsigned keep = fa_keep_bits_cols(drop, key_a + mt * 16, q0 + nt * 8);
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const bool kept = keep >> e & 1;
                        dpt[mt][nt][e] = pt[mt][nt][e] * ((kept ? dpt[mt][nt][e] * drop.scale : 0.0f)
                                                          - deltat[nt * 8 + tq * 2 + (e & 1)]);
                        if (!kept) pt[mt][nt][e] = 0.0f;
                    }
                }
            fa_gemm_pv<T, DP, NT, P, MT>(dv_acc, pt, dt);    // dV += (Pᵀ ∘ Mᵀ) dO
            fa_gemm_pv<T, DP, NT, P, MT>(dk_acc, dpt, qt);   // dK += dSᵀ Q
        } else {
            fa_gemm_pv<T, DP, NT, P, MT>(dv_acc, pt, dt);   // dV += Pᵀ dO
            fa_gemm_abt<T, DP, NT, P, MT>(dpt, vs, warp * WN, dt);
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) dpt[mt][nt][e] = pt[mt][nt][e] * (dpt[mt][nt][e] - deltat[nt * 8 + tq * 2 + (e & 1)]);   // dSᵀ
            fa_gemm_pv<T, DP, NT, P, MT>(dk_acc, dpt, qt);   // dK += dSᵀ Q
        }
        if constexpr (ATOMIC_DQ) {
            fa_stage_transposed<T, MT, NT, PQ>(dst, warp * WN, dpt);
            __syncthreads();
            const int p = step / per_head;
            fa_add_dq<T, D, DP, BN, BQ, P, PQ>(dq_acc + (((long long)b * heads + group * per_group + p) * s) * D, q0, s, dst, ks);
        }
        __syncthreads();
    }

    float dk_scale[MT][2], dv_scale[MT][2];   // dV takes the dropout scale
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        dk_scale[mt][0] = dk_scale[mt][1] = scale;
        dv_scale[mt][0] = dv_scale[mt][1] = DROPOUT ? drop.scale : 1.0f;
    }
    fa_store_rows<T, D, DP, MT>(reinterpret_cast<unsigned short *>(dk) + b * dk_b + group * dk_g, dk_s, k0 + warp * WN, t, dk_acc, dk_scale);
    fa_store_rows<T, D, DP, MT>(reinterpret_cast<unsigned short *>(dv) + b * dv_b + group * dv_g, dv_s, k0 + warp * WN, t, dv_acc, dv_scale);
}

// dq = scale * dq_acc, rounded to T: dq_acc fp32 contiguous [batch, heads, s, D], dq addressed like
// the queries. Each thread converts 8 consecutive elements. Grid (ceil(heads * s * D / 8 / 128), batch).
template <class T>
__device__ void flash_backward_dq_finalize(const float *dq_acc, T *dq, long long q_b, long long q_g, long long q_p,
                                           long long q_s, int groups, int per_group, int s, int dim, float scale) {
    const long long chunk = (long long)blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    const int chunks = dim / 8, heads = groups * per_group;
    if (chunk >= (long long)heads * s * chunks) return;
    const int c = (int)(chunk % chunks) * 8;
    const long long row = chunk / chunks;
    const int i = (int)(row % s), h = (int)(row / s), group = h / per_group, p = h % per_group;
    const float4 *in = reinterpret_cast<const float4 *>(dq_acc + ((b * heads + h) * s + i) * (long long)dim + c);
    const float4 lo = in[0], hi = in[1];
    uint4 packed;
    packed.x = fa_pack<T>(lo.x * scale, lo.y * scale);
    packed.y = fa_pack<T>(lo.z * scale, lo.w * scale);
    packed.z = fa_pack<T>(hi.x * scale, hi.y * scale);
    packed.w = fa_pack<T>(hi.z * scale, hi.w * scale);
    *reinterpret_cast<uint4 *>(dq + b * q_b + group * q_g + p * q_p + i * q_s + c) = packed;
}

// ---------------------------------------------------------------------------------------------
// dQ of one block of 4 x MT x 16 query rows of one head (each warp owns MT x 16), over the key
// blocks (BN keys each) it sees. Grid (ceil(s / rows per CTA), heads, batch). dq: addressed like
// the queries. With DROPOUT, dP is dropped as the forward dropped P.
template <class T, int D, int MT, int BN, bool DROPOUT>
__device__ void flash_backward_dq(const T *q, long long q_b, long long q_g, long long q_p, long long q_s,
                                  const T *k, long long k_b, long long k_g, long long k_s,
                                  const T *v, long long v_b, long long v_g, long long v_s,
                                  const T *dout, long long d_b, long long d_g, long long d_p, long long d_s,
                                  const float *lse, const float *delta,
                                  T *dq, long long dq_b, long long dq_g, long long dq_p, long long dq_s, int groups, int per_group,
                                  int s, int t, float scale_log2, float scale, int causal,
                                  float dropout_p, float dropout_scale, unsigned long long philox_seed, unsigned long long philox_offset,
                                  int window) {
    constexpr int DP = (D + 15) / 16 * 16, P = DP + 8, WM = 16 * MT, BM = 4 * WM, NT = BN / 8;
    extern __shared__ __align__(16) unsigned char fa_shared[];
    unsigned short *qs = reinterpret_cast<unsigned short *>(fa_shared);
    unsigned short *dos = qs + BM * P;
    unsigned short *ks = dos + BM * P;          // [2][BN][P]
    unsigned short *vs = ks + 2 * BN * P;       // [2][BN][P]

    const int q0 = (gridDim.x - 1 - blockIdx.x) * BM, h = blockIdx.y, b = blockIdx.z;
    const int group = h / per_group, p = h % per_group, offset = t - s;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const unsigned short *qh = reinterpret_cast<const unsigned short *>(q) + b * q_b + group * q_g + p * q_p;
    const unsigned short *dh = reinterpret_cast<const unsigned short *>(dout) + b * d_b + group * d_g + p * d_p;
    const unsigned short *kh = reinterpret_cast<const unsigned short *>(k) + b * k_b + group * k_g;
    const unsigned short *vh = reinterpret_cast<const unsigned short *>(v) + b * v_b + group * v_g;
    const int blocks = (fa_key_end(q0, BM, s, t, causal) + BN - 1) / BN, first = fa_key_begin(q0, s, t, window) / BN;

    fa_load_tile<D, DP, BM>(qs, qh, q_s, q0, s);
    fa_load_tile<D, DP, BM>(dos, dh, d_s, q0, s);
    fa_load_tile<D, DP, BN>(ks + (first & 1) * BN * P, kh, k_s, first * BN, t);
    fa_load_tile<D, DP, BN>(vs + (first & 1) * BN * P, vh, v_s, first * BN, t);
    fa_cp_async_commit();

    const int row_a = q0 + warp * WM + g;   // this thread's query rows: row_a + mt * 16 + r * 8
    const long long rows = ((long long)b * gridDim.y + h) * s;
    const FaDropout drop = fa_dropout(dropout_p, dropout_scale, philox_seed, philox_offset, rows, t);
    float row_lse[MT][2], row_delta[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = row_a + mt * 16 + r * 8;
            row_lse[mt][r] = row < s ? lse[rows + row] * FA_LOG2E : POS_INFINITY;
            row_delta[mt][r] = row < s ? delta[rows + row] : 0.0f;
        }
    float acc[MT][DP / 8][4] = {};

    for (int j = first; j < blocks; j++) {
        if (j + 1 < blocks) {
            fa_load_tile<D, DP, BN>(ks + ((j + 1) & 1) * BN * P, kh, k_s, (j + 1) * BN, t);
            fa_load_tile<D, DP, BN>(vs + ((j + 1) & 1) * BN * P, vh, v_s, (j + 1) * BN, t);
            fa_cp_async_commit();
            fa_cp_async_wait<1>();
        } else {
            fa_cp_async_wait<0>();
        }
        __syncthreads();
        const unsigned short *kt = ks + (j & 1) * BN * P, *vt = vs + (j & 1) * BN * P;
        const int k0 = j * BN;

        float pr[MT][NT][4] = {};
        fa_gemm_abt<T, DP, NT, P, MT>(pr, qs, warp * WM, kt);
        const bool edge = k0 + BN > t || (causal && k0 + BN - 1 > q0 + warp * WM + offset)
                          || (window >= 0 && k0 < q0 + warp * WM + WM - 1 + offset - window);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = k0 + nt * 8 + tq * 2 + (e & 1), row = row_a + mt * 16 + (e >> 1) * 8;
                    const float p = fa_exp2(fmaf(pr[mt][nt][e], scale_log2, -row_lse[mt][e >> 1]));
                    pr[mt][nt][e] = edge && fa_hidden(key, row, offset, t, causal, window) ? 0.0f : p;
                }
        float dp[MT][NT][4] = {};
        fa_gemm_abt<T, DP, NT, P, MT>(dp, dos, warp * WM, vt);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const unsigned keep = DROPOUT ? fa_keep_bits_rows(drop, row_a + mt * 16, k0 + nt * 8) : 0xfu;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float dropped = DROPOUT ? (keep >> e & 1 ? dp[mt][nt][e] * drop.scale : 0.0f) : dp[mt][nt][e];
                    pr[mt][nt][e] *= dropped - row_delta[mt][e >> 1];   // dS
                }
            }
        fa_gemm_pv<T, DP, NT, P, MT>(acc, pr, kt);   // dQ += dS K
        __syncthreads();
    }
    float dq_scale[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) dq_scale[mt][0] = dq_scale[mt][1] = scale;
    unsigned short *out = reinterpret_cast<unsigned short *>(dq) + b * dq_b + group * dq_g + p * dq_p;
    fa_store_rows<T, D, DP, MT>(out, dq_s, q0 + warp * WM, s, acc, dq_scale);
}

#define FA_Q_ARGS(T) const T *q, long long q_b, long long q_g, long long q_p, long long q_s
#define FA_KV_ARGS(T)                                                                                  \
    const T *k, long long k_b, long long k_g, long long k_s, const T *v, long long v_b, long long v_g, long long v_s
#define FA_DO_ARGS(T) const T *dout, long long d_b, long long d_g, long long d_p, long long d_s
#define FA_FORWARD_PASS q, q_b, q_g, q_p, q_s, k, k_b, k_g, k_s, v, v_b, v_g, v_s
#define FA_BACKWARD_PASS FA_FORWARD_PASS, dout, d_b, d_g, d_p, d_s
// Every kernel takes the dropout arguments; those without dropout ignore them.
#define FA_DROPOUT_ARGS float dropout_p, float dropout_scale, unsigned long long philox_seed, unsigned long long philox_offset
#define FA_DROPOUT_PASS dropout_p, dropout_scale, philox_seed, philox_offset

// dK/dV (and with ATOMIC, dQ's fp32 accumulation) of one head dim under one name.
#define FA_DKDV_KERNEL(NAME, TYPE, D, MT, BQ, ATOMIC, DROPOUT)                                                    \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) NAME(                                                 \
        FA_Q_ARGS(TYPE), FA_KV_ARGS(TYPE), FA_DO_ARGS(TYPE), const float *lse, const float *delta, TYPE *dk,         \
        long long dk_b, long long dk_g, long long dk_s, TYPE *dv, long long dv_b, long long dv_g, long long dv_s,    \
        float *dq_acc, int groups, int per_group, int s, int t, float scale_log2, float scale, int causal,          \
        FA_DROPOUT_ARGS, int window) {                                                                             \
        flash_backward_dkdv<TYPE, D, MT, BQ, ATOMIC, DROPOUT>(FA_BACKWARD_PASS, lse, delta, dk, dk_b, dk_g, dk_s,    \
                                                              dv, dv_b, dv_g, dv_s, dq_acc, groups, per_group, s,   \
                                                              t, scale_log2, scale, causal, FA_DROPOUT_PASS, window); \
    }

// The forward, dK/dV, dK/dV + atomic dQ and dQ kernels of one head dim, named with VARIANT (empty or
// _dropout) after their role. Tiling: forward MT x BN, dK/dV MT x BQ, dQ MT x BN (see the kernels above).
#define FA_VARIANT_KERNELS(SUFFIX, TYPE, D, VARIANT, DROPOUT, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_forward##VARIANT##_d##D##_##SUFFIX(             \
        FA_Q_ARGS(TYPE), FA_KV_ARGS(TYPE), TYPE *o, long long o_b, long long o_g, long long o_p, long long o_s,     \
        float *lse, int groups, int per_group, int s, int t, float scale_log2, int causal, FA_DROPOUT_ARGS,        \
        int window, const float *sinks) {                                                                          \
        flash_forward<TYPE, D, F_MT, F_BN, DROPOUT>(FA_FORWARD_PASS, o, o_b, o_g, o_p, o_s, lse, groups, per_group, \
                                                    s, t, scale_log2, causal, FA_DROPOUT_PASS, window, sinks);     \
    }                                                                                                              \
    FA_DKDV_KERNEL(flash_backward_dkdv##VARIANT##_d##D##_##SUFFIX, TYPE, D, KV_MT, KV_BQ, false, DROPOUT)           \
    FA_DKDV_KERNEL(flash_backward_dkdvdq##VARIANT##_d##D##_##SUFFIX, TYPE, D, KV_MT, KV_BQ, true, DROPOUT)          \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_backward_dq##VARIANT##_d##D##_##SUFFIX(         \
        FA_Q_ARGS(TYPE), FA_KV_ARGS(TYPE), FA_DO_ARGS(TYPE), const float *lse, const float *delta, TYPE *dq,         \
        long long dq_b, long long dq_g, long long dq_p, long long dq_s, int groups, int per_group, int s, int t,      \
        float scale_log2, float scale, int causal, FA_DROPOUT_ARGS, int window) {                                  \
        flash_backward_dq<TYPE, D, Q_MT, Q_BN, DROPOUT>(FA_BACKWARD_PASS, lse, delta, dq, dq_b, dq_g, dq_p, dq_s,    \
                                                        groups, per_group, s, t, scale_log2, scale, causal,         \
                                                        FA_DROPOUT_PASS, window);                                  \
    }

// One head dim's kernels of one type: both variants, and the delta and dQ-rounding passes (named for
// the head dim too, so every kernel of a program carries its program's d<D>_<type>).
#define FLASH_ATTENTION_KERNELS(SUFFIX, TYPE, D, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                             \
    FA_VARIANT_KERNELS(SUFFIX, TYPE, D, , false, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                             \
    FA_VARIANT_KERNELS(SUFFIX, TYPE, D, _dropout, true, F_MT, F_BN, KV_MT, KV_BQ, Q_MT, Q_BN)                      \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_backward_delta_d##D##_##SUFFIX(                 \
        const TYPE *o, long long o_b, long long o_g, long long o_p, long long o_s, FA_DO_ARGS(TYPE), float *delta, \
        int groups, int per_group, int s, int dim) {                                                               \
        flash_backward_delta<TYPE>(o, o_b, o_g, o_p, o_s, dout, d_b, d_g, d_p, d_s, delta, groups, per_group, s, dim); \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_backward_dq_finalize_d##D##_##SUFFIX(           \
        const float *dq_acc, TYPE *dq, long long q_b, long long q_g, long long q_p, long long q_s, int groups,       \
        int per_group, int s, int dim, float scale) {                                                              \
        flash_backward_dq_finalize<TYPE>(dq_acc, dq, q_b, q_g, q_p, q_s, groups, per_group, s, dim, scale);        \
    }

// What the program builds (NeuralKernels.programSource defines these before the file): the head dim,
// its tiling (forward MT, BN, dK/dV MT, BQ, dQ MT, BN; NeuralKernels.AttentionTiling) and the types.
#ifndef FA_HEAD_DIM
#define FA_HEAD_DIM 64
#endif
#ifndef FA_TILING
#define FA_TILING 2, 64, 2, 32, 2, 32
#endif
#ifndef FA_TYPES
#define FA_TYPES(MACRO) MACRO(bf16, bf16) MACRO(f16, f16)
#endif
#define FA_EXPAND(MACRO, ...) MACRO(__VA_ARGS__)
#define FA_TYPE_KERNELS(SUFFIX, TYPE) FA_EXPAND(FLASH_ATTENTION_KERNELS, SUFFIX, TYPE, FA_HEAD_DIM, FA_TILING)
FA_TYPES(FA_TYPE_KERNELS)
