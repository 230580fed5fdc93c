import ArgumentParser
import Foundation
import MegatronTraining

/// `megatron pretrain-gpt`: Megatron-LM's `pretrain_gpt.py`, with its flag names.
struct PretrainGPT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain-gpt",
        abstract: "Pretrain a GPT model with Megatron-LM's flags.",
        discussion: """
            With no flags, trains a small GPT on a built-in synthetic corpus for about a minute and prints \
            generated text. Flags use Megatron-LM's names (--num-layers, --hidden-size, --lr, ...); a Megatron \
            flag this build does not support yet is refused by name.
            """)

    @Argument(parsing: .captureForPassthrough, help: "Megatron-LM flags.")
    var flags: [String] = []

    func run() throws {
        let arguments: PretrainArguments
        do {
            arguments = try MegatronArgumentParser.parse(flags)
            try arguments.validate()
        } catch let error as ArgumentError {
            throw ValidationError(error.description)
        }
        let world: TrainingWorld?
        do {
            world = try TrainingWorld.current(arguments)
        } catch let error as ArgumentError {
            throw ValidationError(error.description)
        }
        let isRankZero = (world?.groups.world.rank ?? 0) == 0
        // On a terminal, a progress line redrawn in place between Megatron's log lines (rank 0 only).
        let live = isatty(STDOUT_FILENO) != 0 && isRankZero
        let clear = live ? "\r\u{1B}[K" : ""
        let trainer = try Pretrainer(arguments: arguments, groups: world?.groups) { line in
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
        if arguments.usesEmbeddedCorpus {
            // Every rank decodes (a tensor-parallel model needs all its ranks); rank 0 prints.
            let text = trainer.sample(prompt: "The cat")
            if isRankZero { print("\n> sample from the trained model:\n\n" + text) }
        }
    }
}
