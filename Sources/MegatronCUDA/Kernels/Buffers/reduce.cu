// Sum of a float32 vector in two deterministic launches: each block reduces a grid-stride slice
// to one partial (warp shuffles, then one value per warp through shared memory); one block then
// sums the partials. Same input, same launch shape -> bit-identical result.

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
    return value;
}

// Valid in thread 0; blockDim.x must be a multiple of 32, at most 1024.
__device__ float block_sum(float value) {
    __shared__ float warp_totals[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    value = warp_sum(value);
    if (lane == 0) warp_totals[warp] = value;
    __syncthreads();
    value = threadIdx.x < blockDim.x / 32 ? warp_totals[lane] : 0.0f;
    if (warp == 0) value = warp_sum(value);
    return value;
}

extern "C" __global__ void sum_f32_partials(float *partials, const float *in, long long n) {
    float value = 0.0f;
    for (long long i = global_thread_index(); i < n; i += grid_stride()) value += in[i];
    value = block_sum(value);
    if (threadIdx.x == 0) partials[blockIdx.x] = value;
}

extern "C" __global__ void sum_f32_final(float *out, const float *partials, int count) {
    float value = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) value += partials[i];
    value = block_sum(value);
    if (threadIdx.x == 0) *out = value;
}
