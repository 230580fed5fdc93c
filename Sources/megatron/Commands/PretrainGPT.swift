import ArgumentParser
import Foundation
import MegatronParallel
import MegatronTraining

/// `megatron pretrain-gpt`: Megatron-LM's `pretrain_gpt.py`, with its flag names.
struct PretrainGPT: ParsableCommand {
    // `megatron help pretrain-gpt` shows the discussion: the flag list itself.
    static let configuration = CommandConfiguration(commandName: "pretrain-gpt", abstract: "Pretrain a GPT model with Megatron-LM's flags.",
                                                    discussion: PretrainHelp.text())

    @Argument(parsing: .captureForPassthrough, help: "Megatron-LM flags.")
    var flags: [String] = []

    func run() throws {
        // The flags are captured whole, so -h / --help arrive here (argparse takes them anywhere).
        if flags.contains("--help") || flags.contains("-h") {
            print(Megatron.helpMessage(for: Self.self))
            return
        }
        let parsed: ParsedCommandLine
        do {
            parsed = try MegatronArgumentParser.parseCommandLine(flags)
            try parsed.arguments.validate()
        } catch let error as ArgumentError {
            throw ValidationError(error.description)
        }
        let arguments = parsed.arguments
        // Thread ranks share one environment and train on the CPU, which reads none of these variables.
        let environmentNotes = RankContext.current == nil ? Self.apply(parsed.environment) : []
        let world: TrainingWorld?
        do {
            world = try TrainingWorld.current(arguments)
        } catch let error as ArgumentError {
            throw ValidationError(error.description)
        }
        let isRankZero = (world?.parallel.world.rank ?? 0) == 0
        if isRankZero { (parsed.notes + environmentNotes).forEach { print($0) } }
        // On a terminal, a progress line redrawn in place between Megatron's log lines (rank 0 only).
        let live = isatty(STDOUT_FILENO) != 0 && isRankZero
        let clear = live ? "\r\u{1B}[K" : ""
        let trainer = try Pretrainer(arguments: arguments, parallel: world?.parallel) { line in
            print(clear + line)
            fflush(stdout)
        }
        if live {
            trainer.onIteration = { iteration, total, loss, milliseconds in
                print(String(format: "\r\u{1B}[K iteration %d/%d | lm loss %.4f | %.1f ms/iter", iteration, total, loss, milliseconds),
                      terminator: "")
                fflush(stdout)
            }
        }
        _ = try trainer.run()
        if live { print(clear, terminator: "") }
        // Generation has no cache for Gated DeltaNet layers yet, and no pipeline schedule, so those models write no sample.
        if arguments.usesEmbeddedCorpus && arguments.experimentalAttentionVariant == nil && arguments.pipelineModelParallelSize == 1 {
            // Every rank decodes (a tensor-parallel model needs all its ranks); rank 0 prints.
            let text = try trainer.sample(prompt: "The cat")
            if isRankZero { print("\n> sample from the trained model:\n\n" + text) }
        }
    }

    /// Sets a config file's `ENV_VARS` that the environment does not set yet (the environment wins, as the
    /// command line wins over the file), before anything reads them (NCCL, the CUDA context); says which it kept.
    static func apply(_ variables: [EnvironmentVariable]) -> [String] {
        let environment = ProcessInfo.processInfo.environment
        let kept = variables.filter { environment[$0.name] != nil && environment[$0.name] != $0.value }
        for variable in variables where environment[variable.name] == nil { setenv(variable.name, variable.value, 0) }
        return kept.map { "> ENV_VARS: kept \($0.name)=\(environment[$0.name]!) from the environment (the file has \($0.value))" }
    }
}
