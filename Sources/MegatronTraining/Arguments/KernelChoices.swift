import Foundation
import MegatronCUDA
import MegatronTensor

extension PretrainArguments {
    /// The environment a GPU's context is created with: `base`, plus what `--deterministic-mode`
    /// (MEGATRON_DETERMINISTIC=1: ordered embedding backward and scatter-add, attention's fixed-order dQ) and
    /// `--attention-backend flash|fused` (MEGATRON_ATTENTION=kernels|cudnn) and, with `--bf16`,
    /// `--disable-bf16-reduced-precision-matmul` (MEGATRON_BF16_REDUCED_PRECISION_REDUCTION=0) ask for. A variable
    /// `base` sets wins.
    public func cudaEnvironment(_ base: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        var environment = base
        if deterministicMode, environment["MEGATRON_DETERMINISTIC"] == nil { environment["MEGATRON_DETERMINISTIC"] = "1" }
        if let backend = requestedAttentionBackend, environment[AttentionBackend.variable] == nil {
            environment[AttentionBackend.variable] = backend.rawValue
        }
        if requestedGemmReductionPrecision == .fp32PartialSums, environment[CUDAContext.bf16ReducedPrecisionReductionVariable] == nil {
            environment[CUDAContext.bf16ReducedPrecisionReductionVariable] = "0"
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

    /// `--disable-bf16-reduced-precision-matmul` applies to bf16 runs only, as Megatron's TransformerConfig sets
    /// torch's switch only with `--bf16`.
    var requestedGemmReductionPrecision: GemmReductionPrecision {
        bf16 && disableBF16ReducedPrecisionMatmul ? .fp32PartialSums : .reducedAllowed
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
        if requestedGemmReductionPrecision == .fp32PartialSums && context.gemmReductionPrecision != .fp32PartialSums {
            throw ArgumentError("--disable-bf16-reduced-precision-matmul asks for \(CUDAContext.bf16ReducedPrecisionReductionVariable)=0, "
                + "but the GPU was set up without it")
        }
    }
}
