import ArgumentParser

/// `megatron pretrain-gpt`: Megatron-LM's `pretrain_gpt.py`.
struct PretrainGPT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain-gpt",
        abstract: "Pretrain a GPT model with Megatron-LM's flags.")

    func run() throws {
        throw ValidationError("pretrain-gpt is not implemented yet")
    }
}
