import MegatronCUDA

/// The implementation behind flash attention on CUDA tensors.
///
///     MEGATRON_ATTENTION=cudnn megatron bench attention ...   // cuDNN's fused SDPA (opt-in)
///     megatron bench attention ...                            // our kernels (default)
public enum AttentionBackend: String, Sendable, CaseIterable {
    /// The FA2-style kernels of NeuralKernels (flash_attention.cu).
    case kernels
    /// cuDNN 9's fused SDPA graphs (`CuDNNAttention`); problems no cuDNN engine takes still run the kernels.
    case cudnn

    /// The environment variable that picks the backend.
    public static let variable = "MEGATRON_ATTENTION"

    /// Reads MEGATRON_ATTENTION: unset, empty or "kernels" for our kernels, "cudnn" for cuDNN.
    public init(environment: [String: String]) throws {
        let value = environment[Self.variable] ?? ""
        guard let backend = value.isEmpty ? .kernels : AttentionBackend(rawValue: value.lowercased()) else {
            throw CUDAError.invalidArgument("\(Self.variable)=\(value) is not an attention backend; use one of "
                + Self.allCases.map(\.rawValue).joined(separator: ", "))
        }
        self = backend
    }
}
