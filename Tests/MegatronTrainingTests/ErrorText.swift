import MegatronCore
@testable import MegatronTraining

/// What `body` throws, as the text a user reads, or "no error": how the argument tests compare refusals.
func errorText(_ body: () throws -> Void) -> String {
    do {
        try body()
        return "no error"
    } catch {
        return "\(error)"
    }
}

/// The model configuration a `pretrain-gpt` command line (flags separated by single spaces) gives, validated.
func validatedConfig(_ line: String) throws -> TransformerConfig {
    let args = try MegatronArgumentParser.parse(line.split(separator: " ").map(String.init))
    try args.validate()
    return try args.transformerConfig()
}
