import MegatronCUDA

/// Device storage, moving tensors between host and device, and the views kernels read.
extension Storage {
    /// `byteCount` bytes of device memory from the context's caching allocator, returned to it when
    /// the storage dies. Enqueued work that still uses the block is safe: the allocator hands it
    /// out again only to work enqueued later on the same stream.
    static func cuda(byteCount: Int, ordinal: Int, zeroed: Bool) -> Storage {
        let context = CUDAContext.of(.cuda(ordinal))
        return cudaCheck("allocating \(byteCount) bytes on cuda:\(ordinal)") {
            let allocation = try context.allocator.allocate(bytes: byteCount, stream: context.stream.allocatorKey)
            if zeroed { try context.device.zero(allocation.address, bytes: byteCount, stream: context.stream) }
            return Storage(pointer: UnsafeMutableRawPointer(bitPattern: UInt(allocation.address))!, byteCount: byteCount,
                           device: .cuda(ordinal), deallocate: { _ in context.allocator.free(allocation) })
        }
    }
}

extension Tensor {
    /// A contiguous tensor whose contents are unspecified on a GPU (every op output is fully written
    /// by its kernel, so zeroing would be wasted work) and zero on the CPU. For buffers every element
    /// of which is written next (a split's gradient).
    public static func empty(_ shape: [Int], dtype: DType, device: Device) -> Tensor {
        guard case .cuda(let ordinal) = device else { return Tensor(zeros: shape, dtype: dtype) }
        let storage = Storage.cuda(byteCount: Shape.elementCount(shape) * dtype.byteSize, ordinal: ordinal, zeroed: false)
        return Tensor(storage: storage, shape: shape, strides: Shape.contiguousStrides(shape), dtype: dtype)
    }

    /// Device address of element [0, 0, ...].
    var deviceAddress: UInt64 { UInt64(UInt(bitPattern: storage.pointer)) + UInt64(offset * dtype.byteSize) }

    /// This view as a kernel operand.
    var kernelArgument: TensorKernelArgument {
        TensorKernelArgument(address: deviceAddress, shape: shape, strides: strides, dtype: dtype.kernelCode)
    }

    /// This tensor's data on `target`: the same value when it is already there, else a contiguous copy
    /// (through pinned host buffers). Copies to the device are asynchronous; to the host they wait
    /// for the device's stream, since the values must be there on return.
    ///
    ///     let x = Tensor(shape: [3], values: [1, 2, 3]).to(.cuda(0))
    ///     let back = x.to(.cpu)
    public func to(_ target: Device) -> Tensor {
        if target == device { return self }
        switch (device, target) {
        case (.cpu, .cuda(let ordinal)):
            let source = madeContiguous()
            let out = Tensor.empty(shape, dtype: dtype, device: target)
            let context = CUDAContext.of(.cuda(ordinal))
            context.hostCopies.countHostToDevice()
            context.run("copy host to \(target), \(count * dtype.byteSize) bytes") {
                try context.staging.copyToDevice(UnsafeRawBufferPointer(start: source.pointer(as: UInt8.self),
                                                                        count: count * dtype.byteSize),
                                                 to: out.deviceAddress, stream: context.stream)
            }
            return out
        case (.cuda, .cpu):
            let source = madeContiguous()
            let context = CUDAContext.of(device)
            context.hostCopies.countDeviceToHost()
            let bytes: [UInt8] = context.run("copy \(device) to host, \(count * dtype.byteSize) bytes") {
                try context.staging.copyToHost(from: source.deviceAddress, count: count * dtype.byteSize, stream: context.stream)
            }
            let out = Tensor(zeros: shape, dtype: dtype)
            if !bytes.isEmpty {
                bytes.withUnsafeBytes { out.storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            return out
        default:
            // GPU to GPU goes through the host: correct, and rare outside communication (which has its own path).
            return to(.cpu).to(target)
        }
    }
}

/// A tensor's values on their way to the host (`Tensor.startCopyToHost`).
public final class PendingHostTensor {
    private let shape: [Int]
    private let dtype: DType
    private var read: (() -> [UInt8])?
    private var done: Tensor?

    init(_ resolved: Tensor) {
        shape = resolved.shape
        dtype = resolved.dtype
        done = resolved
    }

    init(shape: [Int], dtype: DType, read: @escaping () -> [UInt8]) {
        self.shape = shape
        self.dtype = dtype
        self.read = read
    }

    /// The CPU tensor; waits for its own copy only.
    public func tensor() -> Tensor {
        if let done { return done }
        let out = Tensor(zeros: shape, dtype: dtype)
        let bytes = read!()
        read = nil
        if !bytes.isEmpty { bytes.withUnsafeBytes { out.storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        done = out
        return out
    }
}

extension Tensor {
    /// Starts copying this tensor to the host, after the work enqueued so far, and returns at once (a CPU
    /// tensor is its own result, contiguous). Reading the result waits for that copy only: a value made early in a step
    /// (a loss after the forward) is read at the step's end without draining the GPU's queue, which would
    /// leave the GPU idle while the host prepares the next step.
    ///
    ///     let loss = lossTotal.startCopyToHost()   // after the forward
    ///     ... backward, optimizer step ...
    ///     print(loss.tensor().item())
    public func startCopyToHost() -> PendingHostTensor {
        guard case .cuda = device else { return PendingHostTensor(madeContiguous().to(.cpu)) }
        let source = madeContiguous()
        let context = CUDAContext.of(device)
        let byteCount = count * dtype.byteSize
        context.hostCopies.countDeviceToHost()
        let copy = context.run("copy \(device) to host later, \(byteCount) bytes") {
            try context.staging.startCopyToHost(from: source.deviceAddress, byteCount: byteCount, stream: context.stream)
        }
        return PendingHostTensor(shape: shape, dtype: dtype) {
            // Holding `source` keeps its memory from being reused before the copy has run.
            withExtendedLifetime(source) { context.run("read host copy of \(byteCount) bytes") { try copy.bytes() } }
        }
    }
}

extension DType {
    /// The dtype's code in tensor_ops.cu (`DTypeCode`, generated from Kernels/kernel_codes.cuh).
    var kernelCode: DTypeCode {
        switch self {
        case .float32: .f32
        case .bfloat16: .bf16
        case .float16: .f16
        case .float8E4M3: .f8e4m3
        case .float8E5M2: .f8e5m2
        case .int32: .i32
        case .int64: .i64
        case .bool: .bool
        }
    }
}
