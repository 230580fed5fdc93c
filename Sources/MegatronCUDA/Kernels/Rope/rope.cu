// Rotary position embedding (Megatron's non-interleaved halves) in one pass, and its backward.
//
// x is [outer0, outer1, outer2, seq, head_dim] with any element strides on the first four dims
// and the last contiguous (q and k are strided views of the fused QKV projection); out is
// contiguous in that shape. The first rotary_dim channels of each row rotate by the tables
// cos/sin [seq, rotary_dim] (table `outer0 index * table_stride`: 0 shares one table, per-row
// positions give each batch row its own); channels past rotary_dim are copied.
//
// With h = rotary_dim / 2, channels (i, i + h) form a pair:
//   forward:   out_i = x_i cos_i - x_{i+h} sin_i      out_{i+h} = x_{i+h} cos_{i+h} + x_i sin_{i+h}
//   backward:  dx_i  = g_i cos_i + g_{i+h} sin_{i+h}  dx_{i+h}  = g_{i+h} cos_{i+h} - g_i sin_i
// (the backward is the transposed rotation). Each thread handles V channels of both halves of a
// pair (V = 8: one 16-byte access per operand for 16-bit types), or V pass-through channels.
// Threads are laid out [rows per block, lanes per row]. Rows are visited position-major (all heads
// of position s, then s + 1): a block's rows share one table row, which stays in L1, and the heads
// of one position sit side by side in the fused QKV layout the input is usually a view of.

template <class T, int V> __device__ __forceinline__ void rope_load(const T *p, float (&v)[V]) {
    if constexpr (V == 8) load8(p, v);
    else v[0] = to_float(p[0]);
}

template <class T, int V> __device__ __forceinline__ void rope_store(T *p, const float (&v)[V]) {
    if constexpr (V == 8) store8(p, v);
    else p[0] = from_float<T>(v[0]);
}

template <class T, int V>
__device__ void rope(T *out, const T *x, const T *cos_table, const T *sin_table, int outer0, int outer1, int outer2,
                     int seq, int head_dim, int rotary_dim, long long rows, long long stride0, long long stride1,
                     long long stride2, long long stride_seq, long long table_stride, int backward) {
    const int half = rotary_dim / 2;
    const int pair_lanes = half / V, lanes = pair_lanes + (head_dim - rotary_dim) / V;
    for (long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y; row < rows;
         row += (long long)gridDim.x * blockDim.y) {
        // rows < 2^31 (the host checks), so the decomposition runs in 32-bit arithmetic.
        unsigned r = (unsigned)row;
        const unsigned c = r % outer2; r /= outer2;
        const unsigned b = r % outer1; r /= outer1;
        const unsigned a = r % outer0, s = r / outer0;
        const T *in = x + a * stride0 + b * stride1 + c * stride2 + s * stride_seq;
        T *target = out + ((((long long)a * outer1 + b) * outer2 + c) * seq + s) * head_dim;
        const long long table_row = a * table_stride + (long long)s * rotary_dim;
        for (int lane = threadIdx.x; lane < lanes; lane += blockDim.x) {
            float u[V], w[V];
            if (lane >= pair_lanes) {   // past rotary_dim: copied
                const int j = rotary_dim + (lane - pair_lanes) * V;
                rope_load<T, V>(in + j, u);
                rope_store<T, V>(target + j, u);
                continue;
            }
            const int i = lane * V;
            float cos_a[V], cos_b[V], sin_a[V], sin_b[V];
            rope_load<T, V>(in + i, u);
            rope_load<T, V>(in + i + half, w);
            rope_load<T, V>(cos_table + table_row + i, cos_a);
            rope_load<T, V>(cos_table + table_row + i + half, cos_b);
            rope_load<T, V>(sin_table + table_row + i, sin_a);
            rope_load<T, V>(sin_table + table_row + i + half, sin_b);
            float first[V], second[V];
#pragma unroll
            for (int k = 0; k < V; k++) {
                first[k] = backward ? u[k] * cos_a[k] + w[k] * sin_b[k] : u[k] * cos_a[k] - w[k] * sin_a[k];
                second[k] = backward ? w[k] * cos_b[k] - u[k] * sin_a[k] : w[k] * cos_b[k] + u[k] * sin_b[k];
            }
            rope_store<T, V>(target + i, first);
            rope_store<T, V>(target + i + half, second);
        }
    }
}

#define ROPE_KERNELS(SUFFIX, TYPE)                                                                                    \
    extern "C" __global__ void rope_##SUFFIX(TYPE *out, const TYPE *x, const TYPE *cos_table, const TYPE *sin_table,  \
            int outer0, int outer1, int outer2, int seq, int head_dim, int rotary_dim, long long rows,                \
            long long stride0, long long stride1, long long stride2, long long stride_seq, long long table_stride,    \
            int backward, int vectorized) {                                                                           \
        if (vectorized)                                                                                               \
            rope<TYPE, 8>(out, x, cos_table, sin_table, outer0, outer1, outer2, seq, head_dim, rotary_dim, rows,      \
                          stride0, stride1, stride2, stride_seq, table_stride, backward);                             \
        else                                                                                                          \
            rope<TYPE, 1>(out, x, cos_table, sin_table, outer0, outer1, outer2, seq, head_dim, rotary_dim, rows,      \
                          stride0, stride1, stride2, stride_seq, table_stride, backward);                             \
    }
FOR_EACH_FLOAT_TYPE(ROPE_KERNELS)
