/// What the caching allocator says when the device has no room for a request even after it gave its cached
/// segments back: PyTorch's facts (the request, the device's free and total memory, what the cache holds and
/// what of it tensors use) and the Megatron flags that make a run need less memory.
///
///     CUDA out of memory: tried to allocate 1.50 GiB; device 0 (NVIDIA H100 80GB HBM3) has 1.12 GiB free of
///     79.10 GiB total, 76.75 GiB held by the cache (76.02 GiB in use by tensors). To need less memory: ...
struct OutOfMemoryReport: CustomStringConvertible {
    var requestedBytes: Int
    /// The segment asked of the device for it (requests are served from 2 MiB or 20+ MiB segments).
    var segmentBytes: Int
    /// Bytes the allocator holds from the device, in use or cached.
    var heldBytes: Int
    /// Bytes of those handed out to tensors and not yet freed.
    var inUseBytes: Int
    var capacity: DeviceCapacity?

    static let advice = "To need less memory: a smaller --micro-batch-size (the same --global-batch-size then "
        + "takes more micro-batches), activation recomputation (--recompute-activations, or --recompute-granularity "
        + "full --recompute-method uniform --recompute-num-layers 1), --use-distributed-optimizer with data "
        + "parallelism, or tensor parallelism (--tensor-model-parallel-size 2 or more, with --sequence-parallel)."

    var description: String {
        var text = "CUDA out of memory: tried to allocate \(formatBytes(requestedBytes))"
        if segmentBytes > CachingAllocator.roundedSize(requestedBytes) {
            text += " (a \(formatBytes(segmentBytes)) segment)"
        }
        text += "; "
        if let capacity {
            text += "\(capacity.name) has \(formatBytes(capacity.freeBytes)) free of \(formatBytes(capacity.totalBytes)) total, "
        }
        text += "\(formatBytes(heldBytes)) held by the cache (\(formatBytes(inUseBytes)) in use by tensors). " + Self.advice
        return text
    }
}
