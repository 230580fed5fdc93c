// Flash attention's backward passes (see flash_attention_common.cuh); their kernels are instantiated in flash_attention.cu.

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
