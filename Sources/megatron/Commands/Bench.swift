import ArgumentParser

/// `megatron bench ...`: performance programs (not tests).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: time kernels and training steps.",
        subcommands: [BenchTrain.self, BenchGemm.self, BenchTokenizer.self, BenchMatmul.self, BenchKernels.self, BenchAttention.self])
}
