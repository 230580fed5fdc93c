// Kernels behind MegatronTensor's `Ops` on CUDA tensors: strided copy / cast, broadcasting
// elementwise ops, reductions over contiguous rows, gather / scatter-add / index-add / embedding,
// and per-row top-k. Every tensor operand is a TensorArg passed by value: its data pointer, dtype,
// and up to 8 dimensions of shape and strides (in elements), so views (transposes, narrows,
// broadcasts with stride 0) are read and written in place. Math runs in fp32, as on the CPU.
//
// The host (CUDAKernels+TensorOps.swift) lays TensorArg out byte for byte; keep the two in step.

#define TENSOR_MAX_RANK 8

struct TensorArg {
    void *data;
    long long shape[TENSOR_MAX_RANK];
    long long strides[TENSOR_MAX_RANK];
    int rank;
    int dtype;   // DTypeCode (kernel_codes.cuh)
};

// The dtype and op codes (DTypeCode, BinaryOpCode, ...) come from kernel_codes.cuh, compiled in front.

__device__ __forceinline__ float f16_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short float_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// NaN is the one value unequal to itself (no math header is needed).
__device__ __forceinline__ bool is_nan(float x) { return x != x; }

__device__ __forceinline__ bool is_integer_type(int dtype) {
    return dtype == DT_I32 || dtype == DT_I64 || dtype == DT_BOOL;
}

// Element `offset` of a tensor as fp32 (bool reads as 0 / 1).
__device__ __forceinline__ float load_float(const TensorArg &t, long long offset) {
    switch (t.dtype) {
    case DT_F32: return ((const float *)t.data)[offset];
    case DT_BF16: return bf16_to_float(((const bf16_t *)t.data)[offset]);
    case DT_F16: return f16_to_float(((const unsigned short *)t.data)[offset]);
    case DT_F8E4M3: return e4m3_to_float(((const unsigned char *)t.data)[offset]);
    case DT_F8E5M2: return e5m2_to_float(((const unsigned char *)t.data)[offset]);
    case DT_I32: return (float)((const int *)t.data)[offset];
    case DT_I64: return (float)((const long long *)t.data)[offset];
    default: return ((const unsigned char *)t.data)[offset] != 0 ? 1.0f : 0.0f;
    }
}

// Stores fp32 `value`, rounding to nearest even; integers truncate toward zero, as the CPU does.
__device__ __forceinline__ void store_float(const TensorArg &t, long long offset, float value) {
    switch (t.dtype) {
    case DT_F32: ((float *)t.data)[offset] = value; break;
    case DT_BF16: ((bf16_t *)t.data)[offset] = float_to_bf16(value); break;
    case DT_F16: ((unsigned short *)t.data)[offset] = float_to_f16(value); break;
    case DT_F8E4M3: ((unsigned char *)t.data)[offset] = float_to_e4m3(value); break;
    case DT_F8E5M2: ((unsigned char *)t.data)[offset] = float_to_e5m2(value); break;
    case DT_I32: ((int *)t.data)[offset] = (int)value; break;
    case DT_I64: ((long long *)t.data)[offset] = (long long)value; break;
    default: ((unsigned char *)t.data)[offset] = value != 0.0f ? 1 : 0; break;
    }
}

__device__ __forceinline__ long long load_integer(const TensorArg &t, long long offset) {
    switch (t.dtype) {
    case DT_I32: return ((const int *)t.data)[offset];
    case DT_I64: return ((const long long *)t.data)[offset];
    case DT_BOOL: return ((const unsigned char *)t.data)[offset];
    default: return (long long)load_float(t, offset);
    }
}

__device__ __forceinline__ void store_integer(const TensorArg &t, long long offset, long long value) {
    switch (t.dtype) {
    case DT_I32: ((int *)t.data)[offset] = (int)value; break;
    case DT_I64: ((long long *)t.data)[offset] = value; break;
    case DT_BOOL: ((unsigned char *)t.data)[offset] = value != 0 ? 1 : 0; break;
    default: store_float(t, offset, (float)value); break;
    }
}

__device__ __forceinline__ int element_bytes(int dtype) {
    switch (dtype) {
    case DT_F32: case DT_I32: return 4;
    case DT_BF16: case DT_F16: return 2;
    case DT_I64: return 8;
    default: return 1;
    }
}

// Row-major coordinates of linear index `i` in `shape`, written to `coords`.
// Operands that collapse to one dimension (contiguous ones do) skip the 64-bit divisions, which
// otherwise bound these memory-bound kernels.
__device__ __forceinline__ void unravel(long long i, const long long *shape, int rank, long long *coords) {
    if (rank == 1) {
        coords[0] = i;
        return;
    }
    if (i <= 0x7fffffffLL) {
        // Below 2^31 elements every size fits 32 bits, whose divisions are several times cheaper.
        unsigned int j = (unsigned int)i;
        for (int d = rank - 1; d >= 0; --d) {
            const unsigned int size = (unsigned int)shape[d];
            coords[d] = j % size;
            j /= size;
        }
        return;
    }
    for (int d = rank - 1; d >= 0; --d) {
        coords[d] = i % shape[d];
        i /= shape[d];
    }
}

__device__ __forceinline__ long long offset_of(const TensorArg &t, const long long *coords) {
    long long offset = 0;
    for (int d = 0; d < t.rank; ++d) offset += coords[d] * t.strides[d];
    return offset;
}

// ---------------------------------------------------------------- copy / cast

// out[i] = in[i] over one shape, any layouts; same dtype copies bits, ints go through 64-bit
// integers, everything else through fp32 (as the CPU's conversions do).
extern "C" __global__ void tensor_copy(TensorArg out, TensorArg in, long long n) {
    long long coords[TENSOR_MAX_RANK];
    const bool same = out.dtype == in.dtype;
    const bool integers = is_integer_type(out.dtype) && is_integer_type(in.dtype);
    const int bytes = element_bytes(in.dtype);
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, out.shape, out.rank, coords);
        const long long o = offset_of(out, coords), s = offset_of(in, coords);
        if (same) {
            switch (bytes) {
            case 1: ((unsigned char *)out.data)[o] = ((const unsigned char *)in.data)[s]; break;
            case 2: ((unsigned short *)out.data)[o] = ((const unsigned short *)in.data)[s]; break;
            case 4: ((unsigned int *)out.data)[o] = ((const unsigned int *)in.data)[s]; break;
            default: ((unsigned long long *)out.data)[o] = ((const unsigned long long *)in.data)[s]; break;
            }
        } else if (integers) {
            store_integer(out, o, load_integer(in, s));
        } else {
            store_float(out, o, load_float(in, s));
        }
    }
}

// The same copy for one dtype when the innermost dimension is contiguous on both sides and every
// row starts 16-byte aligned: each thread moves 16 bytes (`vector` elements). `vectors` counts them.
extern "C" __global__ void tensor_copy_rows16(TensorArg out, TensorArg in, long long vectors, int vector) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < vectors; i += grid_stride()) {
        unravel(i * vector, out.shape, out.rank, coords);
        const long long o = offset_of(out, coords), s = offset_of(in, coords);
        const int bytes = element_bytes(out.dtype);
        *(uint4 *)((char *)out.data + o * bytes) = *(const uint4 *)((const char *)in.data + s * bytes);
    }
}

// ---------------------------------------------------------------- elementwise

// `op` is a BinaryOpCode.
__device__ __forceinline__ float binary_apply(int op, float x, float y) {
    switch (op) {
    case BINARY_ADD: return x + y;
    case BINARY_SUB: return x - y;
    case BINARY_MUL: return x * y;
    case BINARY_DIV: return x / y;
    case BINARY_MAXIMUM: return (is_nan(x) || is_nan(y)) ? __int_as_float(0x7fc00000) : fmaxf(x, y);
    case BINARY_MINIMUM: return (is_nan(x) || is_nan(y)) ? __int_as_float(0x7fc00000) : fminf(x, y);
    default: return powf(x, y);   // BINARY_POW
    }
}

// `op` is a CompareOpCode.
__device__ __forceinline__ bool compare_apply(int op, float x, float y) {
    switch (op) {
    case COMPARE_EQUAL: return x == y;
    case COMPARE_NOT_EQUAL: return x != y;
    case COMPARE_LESS: return x < y;
    case COMPARE_LESS_EQUAL: return x <= y;
    case COMPARE_GREATER: return x > y;
    default: return x >= y;   // COMPARE_GREATER_EQUAL
    }
}

#define GELU_K0 0.7978845608028654f
#define GELU_K1 0.044715f
#define INV_SQRT2 0.7071067811865475f
#define INV_SQRT_2PI 0.3989422804014327f

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// `op` is a UnaryOpCode.
__device__ __forceinline__ float unary_apply(int op, float x) {
    switch (op) {
    case UNARY_NEG: return -x;
    case UNARY_EXP: return expf(x);
    case UNARY_LOG: return logf(x);
    case UNARY_TANH: return tanhf(x);
    case UNARY_SQRT: return sqrtf(x);
    case UNARY_RSQRT: return 1.0f / sqrtf(x);
    case UNARY_ABS: return fabsf(x);
    case UNARY_SIGMOID: return sigmoid(x);
    case UNARY_RELU: return x > 0.0f ? x : 0.0f;
    case UNARY_SILU: return x * sigmoid(x);
    case UNARY_GELU_TANH: return 0.5f * x * (1.0f + tanhf(GELU_K0 * (x + GELU_K1 * x * x * x)));
    case UNARY_SQUARED_RELU: return x > 0.0f ? x * x : 0.0f;
    default: return 0.5f * x * (1.0f + erff(x * INV_SQRT2));   // UNARY_GELU_ERF
    }
}

__device__ __forceinline__ float unary_derivative(int op, float x) {
    switch (op) {
    case UNARY_NEG: return -1.0f;
    case UNARY_EXP: return expf(x);
    case UNARY_LOG: return 1.0f / x;
    case UNARY_TANH: { const float t = tanhf(x); return 1.0f - t * t; }
    case UNARY_SQRT: return 0.5f / sqrtf(x);
    case UNARY_RSQRT: return -0.5f / (x * sqrtf(x));
    case UNARY_ABS: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case UNARY_SIGMOID: { const float s = sigmoid(x); return s * (1.0f - s); }
    case UNARY_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case UNARY_SILU: { const float s = sigmoid(x); return s * (1.0f + x * (1.0f - s)); }
    case UNARY_GELU_TANH: {
        const float t = tanhf(GELU_K0 * (x + GELU_K1 * x * x * x));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * x * x);
    }
    case UNARY_SQUARED_RELU: return x > 0.0f ? 2.0f * x : 0.0f;
    default: return 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);   // UNARY_GELU_ERF
    }
}

// Inputs are already broadcast to `out`'s shape (stride 0 along broadcast dimensions).
extern "C" __global__ void tensor_binary(TensorArg out, TensorArg a, TensorArg b, int op, long long n) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, out.shape, out.rank, coords);
        const float r = binary_apply(op, load_float(a, offset_of(a, coords)), load_float(b, offset_of(b, coords)));
        store_float(out, offset_of(out, coords), r);
    }
}

// `a op b` for contiguous operands of one 16-bit dtype (bf16 or fp16), 16-byte aligned: eight
// elements a thread through 128-bit loads and stores, where the generic kernel's 2-byte accesses
// leave most of the memory bandwidth unused. `groups` counts 8-element groups.
extern "C" __global__ void tensor_binary_vec8(bf16x8 *out, const bf16x8 *a, const bf16x8 *b, int op, int dtype,
                                              long long groups) {
    for (long long g = global_thread_index(); g < groups; g += grid_stride()) {
        const bf16x8 x = a[g], y = b[g];
        bf16x8 r;
        for (int k = 0; k < 8; k++) {
            const float u = dtype == DT_BF16 ? bf16_to_float(x.lanes[k]) : f16_to_float(x.lanes[k]);
            const float v = dtype == DT_BF16 ? bf16_to_float(y.lanes[k]) : f16_to_float(y.lanes[k]);
            const float w = binary_apply(op, u, v);
            r.lanes[k] = dtype == DT_BF16 ? float_to_bf16(w) : float_to_f16(w);
        }
        out[g] = r;
    }
}

// `a op scalar` (or `scalar op a` with scalar_first): a host scalar passed by value, so scalar
// operands cost no host-to-device copy.
extern "C" __global__ void tensor_binary_scalar(TensorArg out, TensorArg a, float scalar, int scalar_first, int op,
                                                long long n) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, out.shape, out.rank, coords);
        const float x = load_float(a, offset_of(a, coords));
        store_float(out, offset_of(out, coords), scalar_first ? binary_apply(op, scalar, x) : binary_apply(op, x, scalar));
    }
}

extern "C" __global__ void tensor_compare(TensorArg out, TensorArg a, TensorArg b, int op, long long n) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, out.shape, out.rank, coords);
        const bool r = compare_apply(op, load_float(a, offset_of(a, coords)), load_float(b, offset_of(b, coords)));
        store_float(out, offset_of(out, coords), r ? 1.0f : 0.0f);
    }
}

extern "C" __global__ void tensor_unary(TensorArg out, TensorArg x, int op, long long n) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, out.shape, out.rank, coords);
        store_float(out, offset_of(out, coords), unary_apply(op, load_float(x, offset_of(x, coords))));
    }
}

// out = grad * f'(x)
extern "C" __global__ void tensor_unary_backward(TensorArg out, TensorArg x, TensorArg grad, int op, long long n) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, out.shape, out.rank, coords);
        const float g = load_float(grad, offset_of(grad, coords));
        store_float(out, offset_of(out, coords), g * unary_derivative(op, load_float(x, offset_of(x, coords))));
    }
}

extern "C" __global__ void tensor_where(TensorArg out, TensorArg condition, TensorArg a, TensorArg b, long long n) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, out.shape, out.rank, coords);
        const bool c = load_float(condition, offset_of(condition, coords)) != 0.0f;
        const float r = c ? load_float(a, offset_of(a, coords)) : load_float(b, offset_of(b, coords));
        store_float(out, offset_of(out, coords), r);
    }
}

// ---------------------------------------------------------------- reductions over rows

// One warp per row of `width` contiguous elements of `x` (rows one after another); lane partials
// combine in a fixed shuffle tree, so results do not depend on timing. op: 0 sum, 1 mean, 2 max.
// Sum (op 0), sum / divisor (op 1: a mean, divisor = the row's full width) or max (op 2, NaN wins)
// of `width` elements starting at `base`, by the 32 lanes of one warp; every lane gets the result.
__device__ __forceinline__ float warp_reduce_span(const TensorArg &x, long long base, long long width, int op) {
    const int lane = threadIdx.x & 31;
    float acc = op == REDUCE_MAX ? -__int_as_float(0x7f800000) : 0.0f;
    bool nan = false;
    for (long long j = lane; j < width; j += 32) {
        const float v = load_float(x, base + j);
        if (op == REDUCE_MAX) { nan |= is_nan(v); acc = fmaxf(acc, v); } else { acc += v; }
    }
    for (int step = 16; step > 0; step >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, acc, step);
        nan |= __shfl_xor_sync(0xffffffffu, (int)nan, step) != 0;
        acc = op == REDUCE_MAX ? fmaxf(acc, other) : acc + other;
    }
    return op == REDUCE_MAX && nan ? __int_as_float(0x7fc00000) : acc;
}

// One warp per contiguous row of `width` elements.
extern "C" __global__ void tensor_reduce_rows(TensorArg out, TensorArg x, long long rows, long long width, int op,
                                              long long divisor) {
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long row = global_thread_index() >> 5; row < rows; row += warps) {
        const float r = warp_reduce_span(x, row * width, width, op);
        if ((threadIdx.x & 31) == 0) store_float(out, row, op == REDUCE_MEAN ? r / (float)divisor : r);
    }
}

// First pass for rows too long for one warp each: fp32 `partial[row * chunks + c]` reduces elements
// [c * chunk, (c + 1) * chunk) of its row (sum for sums and means, max for max), one warp per piece;
// tensor_reduce_rows then reduces the [rows, chunks] partials in a fixed order, so results are
// run-to-run identical.
extern "C" __global__ void tensor_reduce_rows_partial(float *partial, TensorArg x, long long rows, long long width,
                                                      long long chunk, int op) {
    const long long chunks = (width + chunk - 1) / chunk;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long piece = global_thread_index() >> 5; piece < rows * chunks; piece += warps) {
        const long long row = piece / chunks, c = piece % chunks;
        const long long start = c * chunk, length = min(chunk, width - start);
        const float r = warp_reduce_span(x, row * width + start, length, op == REDUCE_MEAN ? REDUCE_SUM : op);
        if ((threadIdx.x & 31) == 0) partial[piece] = r;
    }
}

// Reductions of a contiguous [rows, columns] tensor over its rows (a bias gradient), in two passes
// with a fixed order, so results are run-to-run identical: first fp32 `partial[piece * columns + c]`
// reduces rows [piece * chunk, (piece + 1) * chunk) of column c (sum for sums and means, max for
// max), threads of a warp on neighbouring columns so loads coalesce; then the pieces of each column.
extern "C" __global__ void tensor_reduce_columns_partial(float *partial, TensorArg x, long long rows, long long columns,
                                                         long long chunk, int op) {
    const long long pieces = (rows + chunk - 1) / chunk;
    for (long long i = global_thread_index(); i < pieces * columns; i += grid_stride()) {
        const long long c = i % columns, piece = i / columns;
        const long long end = min(rows, (piece + 1) * chunk);
        float acc = op == REDUCE_MAX ? -__int_as_float(0x7f800000) : 0.0f;
        bool nan = false;
        for (long long r = piece * chunk; r < end; r++) {
            const float v = load_float(x, r * columns + c);
            if (op == REDUCE_MAX) { nan |= is_nan(v); acc = fmaxf(acc, v); } else { acc += v; }
        }
        partial[i] = nan ? __int_as_float(0x7fc00000) : acc;
    }
}

extern "C" __global__ void tensor_reduce_columns_final(TensorArg out, const float *partial, long long pieces,
                                                       long long columns, int op, long long divisor) {
    for (long long c = global_thread_index(); c < columns; c += grid_stride()) {
        float acc = op == REDUCE_MAX ? -__int_as_float(0x7f800000) : 0.0f;
        bool nan = false;
        for (long long piece = 0; piece < pieces; piece++) {
            const float v = partial[piece * columns + c];
            if (op == REDUCE_MAX) { nan |= is_nan(v); acc = fmaxf(acc, v); } else { acc += v; }
        }
        if (op == REDUCE_MEAN) acc /= (float)divisor;
        store_float(out, c, nan ? __int_as_float(0x7fc00000) : acc);
    }
}

// table[ids[t], j] += gradient[t, j] in fp32 by atomics (fast; the order of additions, and so the
// last bits, vary run to run); ids outside [0, vocabulary) are skipped.
extern "C" __global__ void tensor_embedding_backward_atomic(float *table, TensorArg gradient, TensorArg ids,
                                                            long long tokens, long long width, long long vocabulary) {
    long long coords[TENSOR_MAX_RANK];
    long long id_coords[1];
    for (long long i = global_thread_index(); i < tokens * width; i += grid_stride()) {
        const long long t = i / width, j = i - t * width;
        id_coords[0] = t;
        const long long id = load_integer(ids, offset_of(ids, id_coords));
        if (id < 0 || id >= vocabulary) continue;
        coords[0] = t;
        coords[1] = j;
        atomicAdd(table + id * width + j, load_float(gradient, offset_of(gradient, coords)));
    }
}

// Whether (v, i) comes before (bestV, bestI) in "largest first, NaN first, lower index on ties".
__device__ __forceinline__ bool argmax_better(float v, long long i, float bestV, long long bestI) {
    const bool vn = is_nan(v), bn = is_nan(bestV);
    if (vn != bn) return vn;
    if (vn || v == bestV) return i < bestI;
    return v > bestV;
}

// Index of the largest element of each contiguous row (first on ties, first NaN wins), as int64.
extern "C" __global__ void tensor_argmax_rows(long long *out, TensorArg x, long long rows, long long width) {
    const int lane = threadIdx.x & 31;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long row = global_thread_index() >> 5; row < rows; row += warps) {
        const long long base = row * width;
        float best = -__int_as_float(0x7f800000);
        long long bestIndex = width;   // past the end: loses to any real element
        for (long long j = lane; j < width; j += 32) {
            const float v = load_float(x, base + j);
            if (bestIndex == width || argmax_better(v, j, best, bestIndex)) { best = v; bestIndex = j; }
        }
        for (int step = 16; step > 0; step >>= 1) {
            const float otherV = __shfl_xor_sync(0xffffffffu, best, step);
            const long long otherI = __shfl_xor_sync(0xffffffffu, bestIndex, step);
            if (otherI != width && (bestIndex == width || argmax_better(otherV, otherI, best, bestIndex))) {
                best = otherV;
                bestIndex = otherI;
            }
        }
        if (lane == 0) out[row] = bestIndex == width ? 0 : bestIndex;
    }
}

// ---------------------------------------------------------------- indexing

__device__ __forceinline__ long long checked_index(long long value, long long size, const char *op) {
    if (value < 0 || value >= size) {
        // Like PyTorch's device-side assert: a bad index stops the stream with an error at the next sync.
        printf("%s: index %lld out of range for size %lld\n", op, value, size);
        __trap();
    }
    return value;
}

// out (contiguous, index's shape) = x[..., index[...], ...] along `dim`.
extern "C" __global__ void tensor_gather(TensorArg out, TensorArg x, TensorArg index, int dim, long long n) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        unravel(i, index.shape, index.rank, coords);
        const long long picked = checked_index(load_integer(index, offset_of(index, coords)), x.shape[dim], "gather");
        long long source = 0;
        for (int d = 0; d < x.rank; ++d) source += (d == dim ? picked : coords[d]) * x.strides[d];
        store_float(out, i, load_float(x, source));
    }
}

// out (contiguous fp32, holding x) += source scattered along `dim` at `index`. Ordered: one thread
// per index position off `dim` walks `dim` in order, so repeated targets add in a fixed order
// (positions off `dim` never collide). Atomic: one thread per element, order left to timing.
extern "C" __global__ void tensor_scatter_add(float *out, TensorArg outShape, TensorArg index, TensorArg source,
                                              int dim, long long n, int ordered) {
    long long coords[TENSOR_MAX_RANK];
    const long long along = index.shape[dim];
    for (long long i = global_thread_index(); i < n; i += grid_stride()) {
        if (ordered) {
            // i enumerates index positions with coordinate 0 along dim.
            TensorArg reduced = index;
            reduced.shape[dim] = 1;
            unravel(i, reduced.shape, reduced.rank, coords);
            for (long long k = 0; k < along; ++k) {
                coords[dim] = k;
                const long long target = checked_index(load_integer(index, offset_of(index, coords)), outShape.shape[dim], "scatter_add");
                long long o = 0;
                for (int d = 0; d < outShape.rank; ++d) o += (d == dim ? target : coords[d]) * outShape.strides[d];
                out[o] += load_float(source, offset_of(source, coords));
            }
        } else {
            unravel(i, index.shape, index.rank, coords);
            const long long target = checked_index(load_integer(index, offset_of(index, coords)), outShape.shape[dim], "scatter_add");
            long long o = 0;
            for (int d = 0; d < outShape.rank; ++d) o += (d == dim ? target : coords[d]) * outShape.strides[d];
            atomicAdd(out + o, load_float(source, offset_of(source, coords)));
        }
    }
}

// out [outer, size, inner] (contiguous fp32, holding x) += source [outer, count, inner] at rows
// index[k] of the middle dimension; one thread per (outer, inner) position walks k in order.
extern "C" __global__ void tensor_index_add(float *out, const float *source, TensorArg index,
                                            long long outer, long long size, long long count, long long inner) {
    for (long long i = global_thread_index(); i < outer * inner; i += grid_stride()) {
        const long long o = i / inner, j = i % inner;
        for (long long k = 0; k < count; ++k) {
            const long long target = checked_index(load_integer(index, k * index.strides[0]), size, "index_add");
            out[(o * size + target) * inner + j] += source[(o * count + k) * inner + j];
        }
    }
}

// out [tokens, hidden] (contiguous) = weight[ids[t], :]; ids is any integer tensor read flat
// (ids' TensorArg holds its own shape and strides).
extern "C" __global__ void tensor_embedding(TensorArg out, TensorArg weight, TensorArg ids, long long tokens, long long hidden) {
    long long coords[TENSOR_MAX_RANK];
    for (long long i = global_thread_index(); i < tokens * hidden; i += grid_stride()) {
        const long long t = i / hidden, j = i % hidden;
        unravel(t, ids.shape, ids.rank, coords);
        const long long id = checked_index(load_integer(ids, offset_of(ids, coords)), weight.shape[0], "embedding");
        store_float(out, i, load_float(weight, id * weight.strides[0] + j * weight.strides[1]));
    }
}

// ---------------------------------------------------------------- top-k

// Whether (v, i) ranks before (w, j): by value (descending when `largest`), then lower index.
__device__ __forceinline__ bool ranks_before(float v, long long i, float w, long long j, int largest) {
    if (v != w) return largest ? v > w : v < w;
    return i < j;
}

// One thread per contiguous row: k passes, each picking the best element ranked after the last
// pick, so no scratch memory is needed. Values keep x's dtype; indices are int64.
extern "C" __global__ void tensor_topk_rows(TensorArg values, long long *indices, TensorArg x,
                                            long long rows, long long width, long long k, int largest) {
    for (long long row = global_thread_index(); row < rows; row += grid_stride()) {
        const long long base = row * width;
        float lastV = 0.0f;
        long long lastI = -1;
        for (long long p = 0; p < k; ++p) {
            float bestV = 0.0f;
            long long bestI = -1;
            for (long long j = 0; j < width; ++j) {
                const float v = load_float(x, base + j);
                if (lastI >= 0 && !ranks_before(lastV, lastI, v, j, largest)) continue;
                if (bestI < 0 || ranks_before(v, j, bestV, bestI, largest)) { bestV = v; bestI = j; }
            }
            store_float(values, row * k + p, bestV);
            indices[row * k + p] = bestI;
            lastV = bestV;
            lastI = bestI;
        }
    }
}
