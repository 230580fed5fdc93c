import MegatronTensor

/// A private copy of a contiguous CPU tensor's bytes with its shape and dtype: what a rank hands to the others,
/// so that they read a snapshot while the owner goes on and overwrites its tensor.
struct HostBuffer {
    var bytes: [UInt8]
    var shape: [Int]
    var dtype: DType

    /// Copies `tensor`, which must be a contiguous CPU tensor.
    init(_ tensor: Tensor, operation: String) throws {
        try HostBuffer.check(tensor, operation: operation)
        let byteCount = tensor.count * tensor.dtype.byteSize
        let source = UnsafeRawBufferPointer(start: tensor.pointer(as: UInt8.self), count: byteCount)
        bytes = Array(source)
        shape = tensor.shape
        dtype = tensor.dtype
    }

    init(bytes: [UInt8], shape: [Int], dtype: DType) {
        self.bytes = bytes
        self.shape = shape
        self.dtype = dtype
    }

    var count: Int { bytes.count / dtype.byteSize }

    /// The thread backend moves host memory: GPU tensors belong to `NCCLCommunicator`, and views must be made
    /// contiguous by the caller (results are written in place, so a hidden copy would lose them).
    static func check(_ tensor: Tensor, operation: String) throws {
        guard tensor.device == .cpu else {
            throw CommunicatorError(operation, "ThreadCommunicator needs CPU tensors, got one on \(tensor.device)")
        }
        guard tensor.isContiguous else {
            throw CommunicatorError(operation, "tensor of shape \(tensor.shape) with strides \(tensor.strides) "
                + "is not contiguous")
        }
    }

    /// Writes `bytes` into `tensor` starting at its first byte.
    static func write(_ bytes: ArraySlice<UInt8>, into tensor: Tensor) {
        guard !bytes.isEmpty else { return }
        let destination = tensor.pointer(as: UInt8.self)
        bytes.withUnsafeBufferPointer { destination.update(from: $0.baseAddress!, count: $0.count) }
    }
}
