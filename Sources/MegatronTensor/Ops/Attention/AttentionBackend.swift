import MegatronCUDA

/// The implementation behind flash attention on CUDA tensors, chosen by MEGATRON_ATTENTION.
///
///     megatron pretrain-gpt ...                             // auto: cuDNN's fused SDPA where libcudnn.so.9 loads
///     MEGATRON_ATTENTION=kernels megatron pretrain-gpt ...  // our FA2-style kernels
///     MEGATRON_ATTENTION=cudnn megatron pretrain-gpt ...    // cuDNN, and an error naming what to install without it
///
/// cuDNN is the default because it is the faster of the two (`megatron bench attention` compares them).
/// Whatever is chosen, problems cuDNN refuses and
/// deterministic runs (MEGATRON_DETERMINISTIC=1: cuDNN adds dQ atomically) take our kernels.
public enum AttentionBackend: String, Sendable, CaseIterable {
    /// cuDNN when libcudnn.so.9 can be loaded, else our kernels (the default).
    case auto
    /// The FA2-style kernels of CUDAKernels (flash_attention.cu).
    case kernels
    /// cuDNN 9's fused SDPA graphs (`CuDNNAttention`); a missing cuDNN is an error.
    case cudnn

    /// The environment variable that picks the backend.
    public static let variable = "MEGATRON_ATTENTION"

    /// Reads MEGATRON_ATTENTION: unset or empty for `auto`, else one of the case names.
    public init(environment: [String: String]) throws {
        let value = environment[Self.variable] ?? ""
        guard let backend = value.isEmpty ? .auto : AttentionBackend(rawValue: value.lowercased()) else {
            throw CUDAError.invalidArgument("\(Self.variable)=\(value) is not an attention backend; use one of "
                + Self.allCases.map(\.rawValue).joined(separator: ", "))
        }
        self = backend
    }
}
