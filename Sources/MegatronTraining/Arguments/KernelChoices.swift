import Foundation
import MegatronTensor

extension PretrainArguments {
    /// The environment a GPU's context is created with: `base`, plus what `--deterministic-mode`
    /// (MEGATRON_DETERMINISTIC=1: ordered embedding backward and scatter-add, attention's fixed-order dQ) and
    /// `--attention-backend flash|fused` (MEGATRON_ATTENTION=kernels|cudnn) ask for. A variable `base` sets wins.
    public func cudaEnvironment(_ base: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        var environment = base
        if deterministicMode, environment["MEGATRON_DETERMINISTIC"] == nil { environment["MEGATRON_DETERMINISTIC"] = "1" }
        if let backend = requestedAttentionBackend, environment[AttentionBackend.variable] == nil {
            environment[AttentionBackend.variable] = backend.rawValue
        }
        return environment
    }

    /// The attention implementation `--attention-backend` names: flash is our flash kernels, fused is cuDNN's
    /// fused attention (Transformer Engine's meanings); nil leaves the choice to the program.
    var requestedAttentionBackend: AttentionBackend? {
        switch attentionBackend {
        case .flash: .kernels
        case .fused: .cudnn
        case .auto, .unfused, .local: nil
        }
    }

    /// Throws when `context` runs other kernels than these flags ask for: the environment says otherwise, or the
    /// context was made before the flags were read (a GPU's context is made once per process).
    func checkKernelChoices(_ context: CUDAContext) throws {
        if deterministicMode && !context.deterministic {
            throw ArgumentError("--deterministic-mode asks for MEGATRON_DETERMINISTIC=1, but the GPU was set up without it")
        }
        if let backend = requestedAttentionBackend, context.attentionBackend != backend {
            throw ArgumentError("--attention-backend \(attentionBackend.rawValue) asks for \(AttentionBackend.variable)=\(backend.rawValue), "
                + "but the GPU was set up with \(AttentionBackend.variable)=\(context.attentionBackend.rawValue)")
        }
    }
}
