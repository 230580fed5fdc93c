// The gated delta rule of Gated DeltaNet, forward and backward, in fp32.
//
// q, k are [batch, time, heads, key_dim], v and out [batch, time, heads, value_dim], g and beta
// [batch, time, heads]. Per (batch row, head) a state S [key_dim, value_dim] starts at zero and
// for each step t:
//   S = exp(g_t) S;  u_t = beta_t (v_t - S^T k_t);  S += k_t u_t^T;  o_t = S^T (scale q_t)
// Every column j of S evolves on its own (it sees k, q, g, beta and v_t[j] only), so one block
// runs one (batch row, head) and thread j carries column j over time in registers / local
// memory; the steps are sequential, which is slow for long sequences but simple and exact.
//
// The backward walks the steps in reverse with the gradient dS of the state (see
// gated_delta_rule_backward). It needs S before each step: a first pass stores the state at the
// start of every GDR_CHUNK steps in `checkpoints`, then each chunk (last first) is replayed from
// its checkpoint into `chunk_states` and walked back. Gradients of q, k, g and beta sum over the
// columns (a warp sum, then one atomic add per warp), so dq, dk, dg and dbeta must be zeroed first.

#define GDR_MAX_KEY 256
#define GDR_CHUNK 64

__device__ __forceinline__ void gdr_reduce_add(float *target, float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_down_sync(0xffffffffu, x, offset);
    if ((threadIdx.x & 31) == 0 && x != 0.f) atomicAdd(target, x);
}

// One step of column j: s (S_{t-1}[:, j] in, S_t[:, j] out); returns u_t[j], sets kv to (P_t^T k_t)[j].
__device__ __forceinline__ float gdr_advance(float *s, const float *kt, float a, float beta, float vj, int key_dim,
                                             float &kv) {
    kv = 0.f;
    for (int i = 0; i < key_dim; ++i) {
        s[i] *= a;
        kv += s[i] * kt[i];
    }
    const float u = beta * (vj - kv);
    for (int i = 0; i < key_dim; ++i) s[i] += kt[i] * u;
    return u;
}

extern "C" __global__ void gated_delta_rule_forward(float *out, const float *q, const float *k, const float *v,
                                                    const float *g, const float *beta, int time, int heads,
                                                    int key_dim, int value_dim, float scale) {
    const int b = blockIdx.x / heads, h = blockIdx.x % heads, j = threadIdx.x;
    if (j >= value_dim) return;
    float s[GDR_MAX_KEY];
    for (int i = 0; i < key_dim; ++i) s[i] = 0.f;
    for (int step = 0; step < time; ++step) {
        const long long pos = ((long long)b * time + step) * heads + h;
        const float *kt = k + pos * key_dim, *qt = q + pos * key_dim;
        float kv;
        gdr_advance(s, kt, expf(g[pos]), beta[pos], v[pos * value_dim + j], key_dim, kv);
        float o = 0.f;
        for (int i = 0; i < key_dim; ++i) o += s[i] * qt[i];
        out[pos * value_dim + j] = o * scale;
    }
}

// With P_t = exp(g_t) S_{t-1}, kv_t = P_t^T k_t, u_t = beta_t (v_t - kv_t), S_t = P_t + k_t u_t^T and
// o_t = S_t^T q~_t (q~ = scale q), walking t backwards with dS the gradient of S_t:
//   dS += q~_t do_t^T;  dq~_t = S_t do_t;  du = dS^T k_t;  dk_t = dS u_t + P_t dkv;  dv_t = beta_t du;
//   dbeta_t = du . (v_t - kv_t);  dkv = -beta_t du;  dP = dS + k_t dkv^T;  dg_t = sum(dP * P_t);  dS = exp(g_t) dP
// Threads past value_dim carry a zero column, so every lane of a warp joins the sums.
extern "C" __global__ void gated_delta_rule_backward(float *dq, float *dk, float *dv, float *dg, float *dbeta,
                                                     float *checkpoints, float *chunk_states, const float *q,
                                                     const float *k, const float *v, const float *g,
                                                     const float *beta, const float *dout, int time, int heads,
                                                     int key_dim, int value_dim, float scale) {
    const int task = blockIdx.x, b = task / heads, h = task % heads, j = threadIdx.x;
    const bool active = j < value_dim;
    const int chunks = (time + GDR_CHUNK - 1) / GDR_CHUNK;
    const long long column = (long long)key_dim * value_dim;
    float *saved = checkpoints + (long long)task * chunks * column;     // [chunk][i][j]
    float *states = chunk_states + (long long)task * GDR_CHUNK * column;  // [step in chunk][i][j]
    float s[GDR_MAX_KEY], ds[GDR_MAX_KEY];
    for (int i = 0; i < key_dim; ++i) s[i] = ds[i] = 0.f;
    for (int step = 0; step < time; ++step) {
        const long long pos = ((long long)b * time + step) * heads + h;
        if (step % GDR_CHUNK == 0 && active)
            for (int i = 0; i < key_dim; ++i) saved[(step / GDR_CHUNK) * column + (long long)i * value_dim + j] = s[i];
        float kv;
        gdr_advance(s, k + pos * key_dim, expf(g[pos]), beta[pos], active ? v[pos * value_dim + j] : 0.f, key_dim, kv);
    }
    for (int c = chunks - 1; c >= 0; --c) {
        const int first = c * GDR_CHUNK, last = min(time, first + GDR_CHUNK);
        for (int i = 0; i < key_dim; ++i) s[i] = active ? saved[c * column + (long long)i * value_dim + j] : 0.f;
        for (int step = first; step < last; ++step) {
            const long long pos = ((long long)b * time + step) * heads + h;
            if (active)
                for (int i = 0; i < key_dim; ++i) states[(step - first) * column + (long long)i * value_dim + j] = s[i];
            float kv;
            gdr_advance(s, k + pos * key_dim, expf(g[pos]), beta[pos], active ? v[pos * value_dim + j] : 0.f, key_dim, kv);
        }
        for (int step = last - 1; step >= first; --step) {
            const long long pos = ((long long)b * time + step) * heads + h;
            const float *kt = k + pos * key_dim, *qt = q + pos * key_dim;
            const float *previous = states + (step - first) * column;
            const float a = expf(g[pos]), bt = beta[pos];
            const float vj = active ? v[pos * value_dim + j] : 0.f, doj = active ? dout[pos * value_dim + j] : 0.f;
            float kv = 0.f;
            for (int i = 0; i < key_dim; ++i) kv += a * (active ? previous[(long long)i * value_dim + j] : 0.f) * kt[i];
            const float u = bt * (vj - kv);
            float du = 0.f;
            for (int i = 0; i < key_dim; ++i) {
                const float p = a * (active ? previous[(long long)i * value_dim + j] : 0.f);
                ds[i] += scale * qt[i] * doj;
                gdr_reduce_add(dq + pos * key_dim + i, scale * (p + kt[i] * u) * doj);
                du += ds[i] * kt[i];
            }
            if (active) dv[pos * value_dim + j] = bt * du;
            const float dkv = -bt * du;
            float dgj = 0.f;
            for (int i = 0; i < key_dim; ++i) {
                const float p = a * (active ? previous[(long long)i * value_dim + j] : 0.f);
                gdr_reduce_add(dk + pos * key_dim + i, ds[i] * u + p * dkv);
                const float dp = ds[i] + kt[i] * dkv;
                dgj += dp * p;
                ds[i] = a * dp;
            }
            gdr_reduce_add(dg + pos, dgj);
            gdr_reduce_add(dbeta + pos, du * (vj - kv));
        }
    }
}
