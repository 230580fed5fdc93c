import ArgumentParser
import MegatronTraining

/// `megatron bench train`: times training iterations of the model that Megatron flags describe.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time training iterations (forward, backward, clip, optimizer) for a model given by Megatron flags.")

    @Option(help: "Untimed iterations first.") var warmup = 2
    @Option(help: "Timed iterations.") var iterations = 5
    @Argument(parsing: .captureForPassthrough, help: "Megatron-LM flags describing the model and batch.")
    var flags: [String] = []

    func run() throws {
        var arguments = try MegatronArgumentParser.parse(flags)
        if arguments.lr == nil { arguments.lr = 1e-4 }
        if arguments.trainIters == nil && arguments.trainSamples == nil { arguments.trainIters = warmup + iterations }
        // Under `megatron launch` each rank times its part; rank 0 prints.
        let world = try TrainingWorld.current(arguments)
        let trainer = try Pretrainer(arguments: arguments, groups: world?.groups) { _ in }
        let result = try trainer.benchmark(warmup: warmup, iterations: iterations)
        guard (world?.groups.world.rank ?? 0) == 0 else { return }
        let c = trainer.model.config
        print("model: \(c.numLayers) layers, hidden \(c.hiddenSize), heads \(c.numAttentionHeads), seq \(arguments.seqLength), "
              + "global batch \(arguments.globalBatchSize ?? arguments.microBatchSize), params \(c.paramsDType), device \(trainer.device)")
        print(result.summary)
    }
}
