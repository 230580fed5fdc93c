import ArgumentParser
import MegatronTraining

/// `megatron bench train`: times training iterations of the model that Megatron flags describe.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time training iterations (forward, backward, clip, optimizer) for a model given by Megatron flags "
            + "(MoE ones too: --num-experts, --moe-*; TFLOP/s count the active experts).")

    @Option(help: "Untimed iterations first.") var warmup = 2
    @Option(help: "Timed iterations.") var iterations = 5
    @Argument(parsing: .captureForPassthrough, help: "Megatron-LM flags describing the model and batch.")
    var flags: [String] = []

    func run() throws {
        // A benchmark needs no learning rate or length of its own: defaults go first, so given flags override them.
        var defaults = ["--lr", "1e-4"]
        if !flags.contains(where: { $0.hasPrefix("--train-iters") || $0.hasPrefix("--train-samples") }) {
            defaults += ["--train-iters", String(warmup + iterations)]
        }
        let arguments = try MegatronArgumentParser.parse(flags.isEmpty ? [] : defaults + flags)
        // Under `megatron launch` each rank times its part; rank 0 prints.
        let world = try TrainingWorld.current(arguments)
        let trainer = try Pretrainer(arguments: arguments, parallel: world?.parallel) { _ in }
        let result = try trainer.benchmark(warmup: warmup, iterations: iterations)
        // Every rank's figures travel to rank 0 (a collective), which prints them under its own.
        let report = try trainer.rankReport(result)
        guard (world?.parallel.world.rank ?? 0) == 0 else { return }
        let c = trainer.model.config
        let experts = c.moe.map { moe in
            ", \(moe.numExperts) experts of \(moe.ffnHiddenSize) top-\(moe.topk)"
                + (moe.sharedExpertIntermediateSize.map { " + shared \($0)" } ?? "")
                + (arguments.moeGroupedGemm ? " (grouped GEMM)" : " (one expert after another)")
        } ?? ""
        // Which GEMMs ran in FP8, so a timing cannot be mistaken for the BF16 one.
        let fp8 = try arguments.fp8TrainingRecipe().map {
            ", FP8 \($0.format.rawValue) \($0.scaling.rawValue) in \(trainer.model.fp8Layers.count) linear layers"
        } ?? ""
        print("model: \(c.numLayers) layers, hidden \(c.hiddenSize), heads \(c.numAttentionHeads), seq \(arguments.seqLength), "
              + "global batch \(arguments.globalBatchSize ?? arguments.microBatchSize), params \(c.paramsDType)\(experts)\(fp8), "
              + "device \(trainer.device)")
        print(result.summary)
        if let report { print(report) }
    }
}
