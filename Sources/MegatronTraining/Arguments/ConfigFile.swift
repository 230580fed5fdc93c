import Foundation
import Yams

/// `--config FILE` (also Megatron's `--yaml-cfg`): a YAML mapping of flag names to values, turned into flags
/// that come before the command line's, so flags given on the command line override the file.
///
/// ```yaml
/// num-layers: 12          # or num_layers, or --num-layers
/// lr: 6.0e-4
/// swiglu: true            # a switch; false leaves it off
/// data-path: [0.3, web_text_document, 0.7, code_text_document]
/// ```
enum ConfigFile {
    static let flagNames: Set<String> = ["--config", "--yaml-cfg"]

    /// `argv` with each `--config FILE` replaced by the flags the file holds.
    static func expand(_ argv: [String]) throws -> [String] {
        var fromFiles: [String] = [], rest: [String] = []
        var i = 0
        while i < argv.count {
            let word = argv[i]
            let name = word.split(separator: "=", maxSplits: 1).first.map(String.init) ?? word
            if flagNames.contains(name) {
                let path: String
                if word.contains("=") {
                    path = String(word.split(separator: "=", maxSplits: 1)[1])
                } else {
                    guard i + 1 < argv.count else { throw ArgumentError("\(name) needs a file") }
                    i += 1
                    path = argv[i]
                }
                fromFiles += try flags(fromFile: path)
            } else {
                rest.append(word)
            }
            i += 1
        }
        return fromFiles + rest
    }

    /// The flags one YAML file describes, in the file's key order sorted by name for stability.
    static func flags(fromFile path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ArgumentError("--config: cannot read \(path)")
        }
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw ArgumentError("--config \(path): not valid YAML (\(error))")
        }
        guard let mapping = document as? [String: Any] else {
            throw ArgumentError("--config \(path): expected a mapping of flag names to values")
        }
        var out: [String] = []
        for key in mapping.keys.sorted() {
            let flag = "--" + key.drop { $0 == "-" }.replacingOccurrences(of: "_", with: "-")
            switch mapping[key] {
            case let on as Bool:
                if on { out.append(flag) }
            case let list as [Any]:
                out += [flag] + list.map { "\($0)" }
            case nil, is NSNull:
                continue
            case let value?:
                out += [flag, "\(value)"]
            }
        }
        return out
    }
}
