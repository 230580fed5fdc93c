import Foundation
import Yams

/// `--config FILE` and Megatron's `--yaml-cfg FILE`: YAML turned into flags that come before the command line's,
/// so flags given on the command line override the file. `${VAR}` in a value is the environment variable's
/// value (an unset one is an error, as in Megatron). Three shapes are read:
///
/// ```yaml
/// # A mapping of flag names (or Megatron's argparse dests) to values:
/// num-layers: 12          # or num_layers, or --num-layers
/// swiglu: true            # a switch; false leaves it off
/// data-path: [0.3, web_text_document, 0.7, code_text_document]
///
/// # Megatron's --yaml-cfg: argparse dests, with TransformerConfig fields under language_model and
/// # ModelParallelConfig fields under model_parallel (see MegatronYAML):
/// language_model: {num_layers: 24, hidden_size: 1024, activation_func: swiglu}
/// model_parallel: {tensor_model_parallel_size: 1, bf16: true}
/// lr: 2.5e-4
///
/// # Megatron's functional tests (model_config.yaml): flags under MODEL_ARGS, the environment under ENV_VARS.
/// ENV_VARS: {NCCL_ALGO: Ring}
/// MODEL_ARGS: {--num-layers: 12, --tensorboard-dir: ${TENSORBOARD_PATH}, --bf16: true}
/// ```
enum ConfigFile {
    static let flagNames: Set<String> = ["--config", "--yaml-cfg"]

    /// A command line with its config files read.
    struct Expansion {
        var words: [String]
        var notes: [String] = []
        var environment: [EnvironmentVariable] = []
    }

    /// `argv` with each `--config FILE` replaced by the flags the file holds.
    static func expand(_ argv: [String], environment: [String: String]) throws -> Expansion {
        var fromFiles = Expansion(words: []), rest: [String] = []
        var i = 0
        while i < argv.count {
            let (name, inline) = MegatronArgumentParser.split(argv[i])
            if flagNames.contains(name) {
                let path: String
                if let inline {
                    path = inline
                } else {
                    guard i + 1 < argv.count, !argv[i + 1].hasPrefix("--") else { throw ArgumentError("\(name) needs a file") }
                    i += 1
                    path = argv[i]
                }
                let file = try read(path, flag: name, environment: environment)
                fromFiles.words += file.words
                fromFiles.notes += file.notes
                fromFiles.environment += file.environment
            } else {
                rest.append(argv[i])
            }
            i += 1
        }
        fromFiles.words += rest
        return fromFiles
    }

    /// The flags (and environment) one YAML file describes.
    static func read(_ path: String, flag: String, environment: [String: String]) throws -> Expansion {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ArgumentError("\(flag): cannot read \(path)")
        }
        var document: Any?, notes: [String] = []
        do {
            document = try Yams.load(yaml: text)
        } catch YamlError.duplicatedKeysInMapping {
            let (lastOnly, keys) = YAMLDuplicateKeys.keepingLast(text)
            document = try? Yams.load(yaml: lastOnly)
            guard document != nil else { throw ArgumentError("\(flag) \(path): not valid YAML (a key written twice)") }
            notes.append("> \(flag) \(path): written twice, the last value counts (as PyYAML reads it): "
                + keys.joined(separator: ", "))
        } catch {
            throw ArgumentError("\(flag) \(path): not valid YAML (\(error))")
        }
        guard let mapping = document as? [String: Any] else {
            throw ArgumentError("\(flag) \(path): expected a mapping of flag names to values")
        }
        do {
            var expansion = try expand(mapping, path: path, environment: environment)
            expansion.notes = notes + expansion.notes
            return expansion
        } catch let error as ArgumentError {
            throw ArgumentError("\(flag) \(path): \(error)")
        }
    }

    /// The flags of a YAML file's top-level mapping: a functional test's, Megatron's nested sections, or flat.
    static func expand(_ mapping: [String: Any], path: String, environment: [String: String]) throws -> Expansion {
        if let modelArgs = mapping["MODEL_ARGS"] {
            return try functionalTestConfig(modelArgs, env: mapping["ENV_VARS"], path: path, environment: environment)
        }
        var expander = VariableExpander(environment: environment)
        let expanded = expander.expand(mapping) as! [String: Any]
        try expander.check()
        if MegatronYAML.isNested(expanded) { return Expansion(words: try MegatronYAML.flags(expanded)) }
        return Expansion(words: try sortedKeys(expanded).flatMap { try words(key: $0, value: expanded[$0]!) })
    }

    /// A functional test's `model_config.yaml`: `MODEL_ARGS` holds flags as its harness passes them (a `true`
    /// value is a bare switch), `ENV_VARS` the variables it exports; other keys are the harness's own.
    static func functionalTestConfig(_ modelArgs: Any, env: Any?, path: String, environment: [String: String]) throws -> Expansion {
        guard let flags = modelArgs as? [String: Any] else { throw ArgumentError("MODEL_ARGS must map flags to values") }
        guard env == nil || env is [String: Any] else { throw ArgumentError("ENV_VARS must map names to values") }
        var base = VariableExpander(environment: environment)
        let variables = (base.expand(env ?? [String: Any]()) as! [String: Any]).sorted { $0.key < $1.key }
            .compactMap { name, value in text(value).map { EnvironmentVariable(name: name, value: $0) } }
        try base.check()
        // The flags see the file's variables where the environment does not set them, as under the harness.
        var expander = VariableExpander(environment: environment.merging(variables.map { ($0.name, $0.value) }) { own, _ in own })
        let expanded = expander.expand(flags) as! [String: Any]
        try expander.check()
        let notes = variables.isEmpty ? [] : ["> ENV_VARS of \(path): " + variables.map { "\($0.name)=\($0.value)" }.joined(separator: " ")]
        return Expansion(words: try sortedKeys(expanded).flatMap { try words(key: $0, value: expanded[$0]!) },
                         notes: notes, environment: variables)
    }

    /// Keys in a stable order (a YAML mapping has none): by name.
    static func sortedKeys(_ mapping: [String: Any]) -> [String] { mapping.keys.sorted() }

    /// The command-line words of one `key: value`. The key is a flag name (`--num-layers`, `num-layers`,
    /// `num_layers`) or one of Megatron's argparse dests (`add_bias_linear: false` is `--disable-bias-linear`).
    static func words(key: String, value: Any) throws -> [String] {
        let (name, megatron, isDest) = flag(forKey: key)
        if value is [String: Any] { throw ArgumentError("\(key): a mapping is no flag value") }
        guard let text = text(value) else { return [] }
        let isSwitch = PretrainFlags.byName[name].map { !$0.takesValue } ?? megatron?.isSwitch ?? (value is Bool)
        if isSwitch {
            guard let on = Bool(text.lowercased()) else { throw ArgumentError("\(key): \(name) is a switch; give true or false, not '\(text)'") }
            // The dest of a store_false flag holds the opposite of the switch.
            return on != (isDest && megatron?.action == .storeFalse) ? [name] : []
        }
        if let list = value as? [Any] { return [name] + list.compactMap(Self.text) }
        let takesList = PretrainFlags.byName[name]?.takesList ?? (megatron?.action == .list)
        return takesList ? [name] + text.split(whereSeparator: \.isWhitespace).map(String.init) : [name, text]
    }

    /// The flag a key names, Megatron's entry for it, and whether the key is the entry's argparse dest (else
    /// it is the flag's name).
    static func flag(forKey key: String) -> (name: String, megatron: MegatronFlag?, isDest: Bool) {
        if !key.hasPrefix("-"), let megatron = MegatronFlagCatalog.byDest[key.replacingOccurrences(of: "-", with: "_")] {
            return (megatron.names.first { PretrainFlags.byName[$0] != nil } ?? megatron.names[0], megatron, true)
        }
        let name = "--" + key.drop { $0 == "-" }.replacingOccurrences(of: "_", with: "-")
        return (name, MegatronFlagCatalog.byName[name], false)
    }

    /// A YAML scalar (or list) as command-line text; nil for null, an empty string or an empty list.
    static func text(_ value: Any) -> String? {
        switch value {
        case is NSNull: return nil
        case let flag as Bool: return flag ? "true" : "false"
        case let number as Int: return String(number)
        case let number as Double: return "\(number)"
        case let list as [Any]: return list.isEmpty ? nil : list.compactMap(text).joined(separator: " ")
        case let string as String: return string.isEmpty ? nil : string
        default: return "\(value)"
        }
    }
}

/// Replaces `${NAME}` and `$NAME` in YAML strings with the environment's value, as Megatron's YAML loader does, and
/// remembers the names the environment lacks.
struct VariableExpander {
    let environment: [String: String]
    var missing: Set<String> = []

    mutating func expand(_ value: Any) -> Any {
        switch value {
        case let string as String: return expand(string)
        case let list as [Any]: return list.map { expand($0) }
        case let mapping as [String: Any]: return mapping.mapValues { expand($0) }
        default: return value
        }
    }

    /// `${NAME}` and `$NAME` (as envsubst, which Megatron's functional tests run their YAML through) become the
    /// environment's value; a `$` before anything else stays as written.
    mutating func expand(_ string: String) -> String {
        var result = "", rest = Substring(string)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            let name: Substring, end: Substring.Index
            if after.first == "{", let close = after.firstIndex(of: "}") {
                name = after[after.index(after: after.startIndex)..<close]
                end = after.index(after: close)
            } else {
                let nameEnd = after.firstIndex { !($0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber)) } ?? after.endIndex
                name = after[..<nameEnd]
                end = nameEnd
                if name.isEmpty || name.first!.isNumber {
                    result += "$"
                    rest = after
                    continue
                }
            }
            if let value = environment[String(name)] {
                result += value
            } else {
                missing.insert(String(name))
                result += rest[dollar..<end]
            }
            rest = rest[end...]
        }
        return result + rest
    }

    /// Throws naming every variable the file uses that the environment does not set.
    func check() throws {
        guard !missing.isEmpty else { return }
        throw ArgumentError("environment variable\(missing.count == 1 ? "" : "s") "
            + missing.sorted().map { "${\($0)}" }.joined(separator: ", ") + " not set")
    }
}
