/// Parses Megatron-LM command lines into `PretrainArguments`.
///
/// Accepts `--flag value` and `--flag=value`, and `--config FILE` (YAML; later flags override it). A flag Megatron has but this program does not support yet is
/// refused by name; an unknown flag is answered with the nearest known spellings.
///
/// ```swift
/// let args = try MegatronArgumentParser.parse(["--num-layers", "2", "--lr", "3e-4", "--train-iters", "10"])
/// ```
public enum MegatronArgumentParser {
    public static func parse(_ commandLine: [String]) throws -> PretrainArguments {
        if commandLine.isEmpty { return .embeddedDefault }
        let argv = try ConfigFile.expand(commandLine)
        var args = PretrainArguments()
        var i = 0
        while i < argv.count {
            var name = argv[i]
            var inlineValue: String?
            if let eq = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard name.hasPrefix("--") else { throw ArgumentError("unexpected argument '\(argv[i])': flags start with --") }
            guard let flag = PretrainFlags.byName[name] else { throw unknown(name) }
            var value: String?
            if flag.takesList {
                var words = inlineValue.map { [$0] } ?? []
                while i + 1 < argv.count, !argv[i + 1].hasPrefix("--") {
                    i += 1
                    words.append(argv[i])
                }
                guard !words.isEmpty else { throw ArgumentError("\(name) needs at least one value") }
                value = words.joined(separator: "\n")
            } else if flag.takesValue {
                if let inlineValue {
                    value = inlineValue
                } else {
                    guard i + 1 < argv.count, !argv[i + 1].hasPrefix("--") else {
                        throw ArgumentError("\(name) needs a value")
                    }
                    i += 1
                    value = argv[i]
                }
            } else if inlineValue != nil {
                throw ArgumentError("\(name) takes no value")
            }
            try flag.apply(&args, value)
            i += 1
        }
        return args
    }

    static func unknown(_ name: String) -> ArgumentError {
        if let refusal = LoggingFlags.refusal(name) { return refusal }
        if megatronFlagNames.contains(name) {
            return ArgumentError("\(name) is a Megatron-LM flag that pretrain-gpt does not support yet")
        }
        let known = megatronFlagNames.union(PretrainFlags.byName.keys)
        let nearest = known.map { (editDistance($0, name), $0) }.sorted { $0 < $1 }.prefix(3).map(\.1)
        return ArgumentError("unknown flag \(name); did you mean \(nearest.joined(separator: ", "))?")
    }

    /// Levenshtein distance between two flag names.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        var previous = Array(0...y.count)
        for i in x.indices {
            var current = [i + 1]
            for j in y.indices {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x[i] == y[j] ? 0 : 1)))
            }
            previous = current
        }
        return previous[y.count]
    }
}

/// A bad command line, with what is wrong.
public struct ArgumentError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
