/// The flag list of `megatron pretrain-gpt --help`: every supported flag with its value, a line of help and its
/// default (read from `PretrainArguments()`), grouped as Megatron-LM's argparse groups, this program's own
/// flags last.
///
/// ```swift
/// print(PretrainHelp.text())
/// ```
public enum PretrainHelp {
    /// One line (or more, wrapped) per flag.
    struct Entry {
        var names: [String]
        var metavar: String?
        var description: String
        /// "(default: X)" or "(required)".
        var qualifier: String?
    }

    static let ownGroup = "this program's own flags"

    /// The help text, wrapped to `width` columns (under 80: ArgumentParser rewraps lines of 80).
    public static func text(width: Int = 78) -> String {
        let intro = "Flags take Megatron-LM's names and meanings, in its argparse groups; defaults are this program's, which "
            + "are Megatron's. Megatron flags not listed are refused, all at once, with the feature each belongs to. "
            + "With no flags at all, pretrain-gpt trains a small model on a built-in corpus."
        var lines = wrap(intro, width: width, indent: 0)
        for (group, entries) in groups() {
            lines += ["", "\(group):"]
            for entry in entries { lines += render(entry, width: width) }
        }
        return lines.joined(separator: "\n")
    }

    /// The supported flags by group, in Megatron's order of groups and flags.
    static func groups() -> [(String, [Entry])] {
        let defaults = PretrainArguments()
        var order: [String] = [], byGroup: [String: [(Int, Entry)]] = [:]
        func add(_ group: String, _ rank: Int, _ entry: Entry) {
            if byGroup[group] == nil { order.append(group) }
            byGroup[group, default: []].append((rank, entry))
        }
        var listed: Set<String> = []
        let position = Dictionary(MegatronFlagCatalog.all.enumerated().map { ($1.dest, $0) }, uniquingKeysWith: { a, _ in a })
        for (index, flag) in PretrainFlags.all.enumerated() where !listed.contains(flag.name) {
            let megatron = MegatronFlagCatalog.byName[flag.name]
            let names = megatron?.names ?? [flag.name]
            listed.formUnion(names)
            add(megatron?.group ?? ownGroup, megatron.flatMap { position[$0.dest] } ?? index,
                Entry(names: names, metavar: flag.metavar, description: FlagDescriptions.text[flag.name] ?? "",
                      qualifier: qualifier(flag, defaults)))
        }
        add(ownGroup, PretrainFlags.all.count, Entry(names: ["--config", "--yaml-cfg"], metavar: "FILE", description:
            "Flags from a YAML file: flag names to values, Megatron's --yaml-cfg shape, or a functional test's "
            + "model_config.yaml; ${VAR} is the environment's. Flags on the command line override the file."))
        add(ownGroup, PretrainFlags.all.count + 1, Entry(names: ["-h", "--help"], metavar: nil, description: "Show this help."))
        // Megatron's groups in its order; this program's own last.
        let groupOrder = Dictionary(MegatronFlagCatalog.all.enumerated().map { ($1.group, $0) }, uniquingKeysWith: { a, _ in a })
        return order.sorted { (groupOrder[$0] ?? .max, $0) < (groupOrder[$1] ?? .max, $1) }
            .map { group in (group, byGroup[group]!.sorted { $0.0 < $1.0 }.map(\.1)) }
    }

    /// "(required)", or the flag's default when it has one to show.
    static func qualifier(_ flag: Flag, _ defaults: PretrainArguments) -> String? {
        if MegatronArgumentParser.requiredFlags.contains(flag.name) { return "(required)" }
        return flag.takesValue ? flag.defaultText(defaults).map { "(default: \($0))" } : nil
    }

    /// An entry as `  --name METAVAR   help`, the help in a column (on the next line after a long name).
    static func render(_ entry: Entry, width: Int) -> [String] {
        let column = 30
        var metavar = entry.metavar, description = entry.description
        // A long list of choices goes into the help text.
        if let choices = metavar, choices.contains("|"), choices.count > 24 {
            metavar = "NAME"
            description += " One of: " + choices.replacingOccurrences(of: "|", with: ", ") + "."
        }
        let label = "  " + entry.names.joined(separator: ", ") + (metavar.map { " " + $0 } ?? "")
        let body = wrap(description + (entry.qualifier.map { " " + $0 } ?? ""), width: width, indent: column)
        if label.count + 2 <= column {
            return [label + String(repeating: " ", count: column - label.count) + body[0].dropFirst(column)] + body.dropFirst()
        }
        return [label] + body
    }

    /// `text` in lines of at most `width` columns (longer words stand alone), each indented by `indent`.
    static func wrap(_ text: String, width: Int, indent: Int) -> [String] {
        let pad = String(repeating: " ", count: indent)
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty, indent + line.count + 1 + word.count > width {
                lines.append(pad + line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        return lines + [pad + line]
    }
}
