import ArgumentParser

/// `megatron preprocess-data`: JSONL to Megatron `.bin/.idx`.
struct PreprocessData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess-data",
        abstract: "Tokenize JSONL documents into Megatron's indexed dataset format (.bin/.idx).")

    func run() throws {
        throw ValidationError("preprocess-data is not implemented yet")
    }
}
