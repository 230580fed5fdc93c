import Foundation

/// Parses Megatron-LM command lines into `PretrainArguments`.
///
/// Accepts `--flag value` and `--flag=value`, Megatron's aliases, and `--config FILE` / `--yaml-cfg FILE` (YAML,
/// see `ConfigFile`; later flags override it). Every problem of a command line is reported in one error: the
/// Megatron flags of features this build lacks, grouped by feature; unknown flags with the nearest spellings;
/// bad values; the flags Megatron requires that are missing. No flags at all is the embedded default run.
///
/// ```swift
/// let args = try MegatronArgumentParser.parse(["--num-layers", "2", "--hidden-size", "64", ...])
/// let parsed = try MegatronArgumentParser.parseCommandLine(CommandLine.arguments.dropFirst(2).map { $0 })
/// parsed.notes.forEach { print($0) }
/// ```
public enum MegatronArgumentParser {
    /// What Megatron's `validate_args` requires; a command line without them is refused.
    static let requiredFlags = ["--num-layers", "--hidden-size", "--num-attention-heads", "--seq-length",
                                "--max-position-embeddings", "--micro-batch-size", "--lr"]

    /// Flags Megatron-LM itself refuses now, with what replaced them.
    static let retiredFlags = [
        "--batch-size": "use --micro-batch-size",
        "--warmup": "use --lr-warmup-fraction",
        "--model-parallel-size": "use --tensor-model-parallel-size",
        "--checkpoint-activations": "use --recompute-activations, or --recompute-granularity and --recompute-method",
    ]

    public static func parse(_ commandLine: [String]) throws -> PretrainArguments {
        try parseCommandLine(commandLine).arguments
    }

    /// The settings `commandLine` describes, with the start-up notes and environment its flags and files ask for.
    /// `environment` fills `${VAR}` in YAML files.
    public static func parseCommandLine(_ commandLine: [String],
                                        environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ParsedCommandLine {
        if commandLine.isEmpty { return ParsedCommandLine(arguments: .embeddedDefault) }
        let expansion = try ConfigFile.expand(commandLine, environment: environment)
        var parse = CommandLineParse(reader: FlagReader(words: expansion.words))
        while let word = parse.reader.next() { parse.read(word) }
        parse.settleCheckpointFormatFlags()
        parse.checkRequired()
        if let error = parse.problems.error { throw error }
        return ParsedCommandLine(arguments: parse.arguments, notes: expansion.notes + groupedNotes(parse.notes),
                                 environment: expansion.environment)
    }

    /// `--name=value` split at the first `=`.
    static func split(_ word: String) -> (String, String?) {
        guard let eq = word.firstIndex(of: "=") else { return (word, nil) }
        return (String(word[..<eq]), String(word[word.index(after: eq)...]))
    }

    /// One line per note, the flags that share it named together.
    static func groupedNotes(_ notes: [(usage: String, text: String)]) -> [String] {
        var order: [String] = [], usages: [String: [String]] = [:]
        for note in notes {
            if usages[note.text] == nil { order.append(note.text) }
            usages[note.text, default: []].append(note.usage)
        }
        return order.map { "> \(usages[$0]!.joined(separator: ", ")): \($0)" }
    }

    static func unknown(_ name: String) -> ArgumentError {
        let known = Set(MegatronFlagCatalog.byName.keys).union(PretrainFlags.byName.keys)
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

/// A parsed `pretrain-gpt` command line: the settings, and what the start-up log says about them.
public struct ParsedCommandLine: Equatable, Sendable {
    public var arguments: PretrainArguments
    /// Start-up lines: flags accepted whose meaning here differs from Megatron's, a YAML file's `ENV_VARS`.
    public var notes: [String] = []
    /// The `ENV_VARS` of a functional-test `model_config.yaml`, in file order: the process sets those the
    /// environment does not already set before anything reads them.
    public var environment: [EnvironmentVariable] = []
}

/// One `NAME=value` a config file asks for.
public struct EnvironmentVariable: Equatable, Sendable {
    public var name: String
    public var value: String
}

/// A bad command line, with what is wrong.
public struct ArgumentError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One command line being parsed: the settings so far, what is wrong with it, which flags it gave.
struct CommandLineParse {
    var reader: FlagReader
    var arguments = PretrainArguments()
    var problems = Problems()
    /// The flags given, by their main spelling.
    var given: Set<String> = []
    var notes: [(usage: String, text: String)] = []
    /// Where the checkpoint-format flags given sit in `problems.unsupported`, until the whole line is read.
    var checkpointFormatFlags: [Int] = []

    /// Reads `word` (and the value words that follow it).
    mutating func read(_ word: String) {
        let (name, inline) = MegatronArgumentParser.split(word)
        if !name.hasPrefix("--") {
            problems.other.append("unexpected argument '\(word)': flags start with --")
        } else if let flag = PretrainFlags.byName[name] {
            apply(flag, as: name, inline: inline)
        } else if let megatron = MegatronFlagCatalog.byName[name] {
            refuse(megatron, as: name, inline: inline)
        } else {
            reader.skipValues()
            problems.other.append(MegatronArgumentParser.unknown(name).description)
        }
    }

    /// A supported flag: sets its value, or records why it cannot.
    mutating func apply(_ flag: Flag, as name: String, inline: String?) {
        do {
            let value = try reader.value(of: name, inline: inline, kind: flag.takesList ? .list : flag.takesValue ? .value : .none)
            try flag.apply(&arguments, value)
            given.insert(flag.name)
            if let text = flag.note(value) { notes.append((flag.takesValue ? "\(name) \(value!)" : name, text)) }
        } catch let unsupported as UnsupportedFeature {
            if let format = Self.unwrittenCheckpointFormat(unsupported, as: name) {
                checkpointFormatFlags.append(problems.unsupported.count)
                problems.unsupported.append(format)
            } else {
                problems.unsupported.append(unsupported)
            }
        } catch {
            problems.other.append("\(error)")
        }
    }

    /// One of Megatron's flags this build lacks: skips its value and records it with its feature (or, for a
    /// flag Megatron itself retired, with its replacement).
    mutating func refuse(_ megatron: MegatronFlag, as name: String, inline: String?) {
        let value = try? reader.value(of: name, inline: inline, kind: megatron.isSwitch ? .none : megatron.action == .list ? .list : .value)
        if let replacement = MegatronArgumentParser.retiredFlags[name] {
            problems.other.append("\(name) is no longer accepted by Megatron-LM: \(replacement)")
        } else {
            let usage = ([name] + (value.map { [$0.replacingOccurrences(of: "\n", with: " ")] } ?? [])).joined(separator: " ")
            if Self.onlyShapesCheckpoints(megatron, as: name) {
                if let value, !megatron.choices.isEmpty, !megatron.choices.contains(value) {
                    problems.other.append("\(name) must be one of \(megatron.choices.joined(separator: ", ")), got '\(value)'")
                    return
                }
                checkpointFormatFlags.append(problems.unsupported.count)
            }
            problems.unsupported.append(UnsupportedFeature(feature: megatron.feature, usage: usage))
        }
    }

    /// Records the flags Megatron requires that were not given.
    mutating func checkRequired() {
        let missing = MegatronArgumentParser.requiredFlags.filter { !given.contains($0) }
            + (given.contains("--train-iters") || given.contains("--train-samples") ? [] : ["--train-iters (or --train-samples)"])
        guard !missing.isEmpty else { return }
        problems.other.append("missing \(missing.count == 1 ? "a flag" : "flags") Megatron-LM requires: "
            + missing.joined(separator: ", ") + " (with no flags at all, pretrain-gpt trains its built-in demo model)")
    }
}

/// The words of a command line, read flag by flag.
struct FlagReader {
    /// What follows a flag.
    enum Kind { case none, value, list }

    let words: [String]
    var index = 0

    /// The next word, or nil at the end.
    mutating func next() -> String? {
        guard index < words.count else { return nil }
        defer { index += 1 }
        return words[index]
    }

    /// The value of flag `name`: its inline `=value`, the next word, or (a list) every word up to the next flag,
    /// joined with newlines; nil for a switch.
    mutating func value(of name: String, inline: String?, kind: Kind) throws -> String? {
        switch kind {
        case .none:
            if inline != nil { throw ArgumentError("\(name) takes no value") }
            return nil
        case .value:
            if let inline { return inline }
            guard index < words.count, !words[index].hasPrefix("--") else { throw ArgumentError("\(name) needs a value") }
            return next()
        case .list:
            var values = inline.map { [$0] } ?? []
            while index < words.count, !words[index].hasPrefix("--") { values.append(next()!) }
            guard !values.isEmpty else { throw ArgumentError("\(name) needs at least one value") }
            return values.joined(separator: "\n")
        }
    }

    /// Skips the words up to the next flag (the values of a flag that is not understood).
    mutating func skipValues() {
        while index < words.count, !words[index].hasPrefix("--") { index += 1 }
    }
}

/// Everything wrong with one command line.
struct Problems {
    var unsupported: [UnsupportedFeature] = []
    var other: [String] = []

    /// One error naming every problem (a single problem in its own words), or nil when there is none.
    var error: ArgumentError? {
        var lines: [String] = []
        if !unsupported.isEmpty {
            var features: [String] = [], usages: [String: [String]] = [:]
            for flag in unsupported {
                if usages[flag.feature] == nil { features.append(flag.feature) }
                usages[flag.feature, default: []].append(flag.usage)
            }
            lines.append("pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):\n"
                + features.map { "  \($0): \(usages[$0]!.joined(separator: ", "))" }.joined(separator: "\n"))
        }
        lines += other
        return lines.isEmpty ? nil : ArgumentError(lines.joined(separator: "\n"))
    }
}
