import CCUDA

/// Whether cuBLASLt may reduce a bf16 GEMM's split-K partial sums in bf16: torch's
/// `torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction`, which Megatron's
/// `--disable-bf16-reduced-precision-matmul` turns off. Allowed (torch's default), cuBLASLt's heuristic picks
/// any reduction scheme; disallowed, only schemes that keep partial sums in the fp32 compute type (or no
/// split-K at all), as torch restricts its cuBLASLt preference.
///
/// ```swift
/// let gemm = try CublasLtGemm(device: device, allocator: allocator, reductionPrecision: .fp32PartialSums)
/// ```
public enum GemmReductionPrecision: Hashable, Sendable {
    /// cuBLASLt's choice, bf16 partial sums included.
    case reducedAllowed
    /// bf16 GEMMs reduce split-K partial sums in fp32 (or not at all).
    case fp32PartialSums

    /// The `CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK` the heuristic gets for `problem`; nil keeps cuBLASLt's
    /// default (every scheme). Only bf16 inputs are restricted: that is all torch's bf16 switch covers.
    public func reductionSchemeMask(for problem: GemmProblem) -> UInt32? {
        guard self == .fp32PartialSums, problem.inputType == .bfloat16 else { return nil }
        return UInt32(CCUBLASLT_REDUCTION_SCHEME_NONE) | UInt32(CCUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)
    }
}
