// Flash attention's forward pass (see flash_attention_common.cuh); its kernels are instantiated in flash_attention.cu.

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

