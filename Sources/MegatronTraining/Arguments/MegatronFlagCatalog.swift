/// What Megatron-LM's argparse declares for one of its flags: spellings, dest, group, action, default, choices,
/// and the feature it belongs to (for refusing the flags of features this build does not have).
struct MegatronFlag: Equatable {
    /// How argparse stores the flag.
    enum Action: String {
        /// `store_true`: a switch that sets its dest to true.
        case storeTrue = "true"
        /// `store_false`: a switch that sets its dest to false (`--no-foo`, `--disable-foo`).
        case storeFalse = "false"
        /// `BooleanOptionalAction`: `--foo` / `--no-foo`.
        case toggle
        /// One value.
        case value
        /// Several values (`nargs='*'`, `'+'` or a count).
        case list
    }

    /// Every spelling, Megatron's main one first.
    let names: [String]
    /// The argparse dest, which is also the key of Megatron's YAML configs.
    let dest: String
    /// The argparse group `--help` lists the flag under.
    let group: String
    let action: Action
    /// Megatron's default as text (`true`, `0.01`, `torch_dist`); nil for None.
    let defaultValue: String?
    let choices: [String]
    let feature: String

    /// Whether the flag is a switch (takes no value).
    var isSwitch: Bool { action == .storeTrue || action == .storeFalse || action == .toggle }

    /// Whether `value` (as YAML or a command line writes it) is Megatron's default for this flag.
    func isDefault(_ value: String) -> Bool {
        guard let defaultValue else { return false }
        if let a = Double(value), let b = Double(defaultValue) { return a == b }
        return value.lowercased() == defaultValue.lowercased()
    }
}

/// Megatron-LM's flags, from the tables `scripts/generate_megatron_flag_names.py` writes (`MegatronFlagTable`).
///
/// ```swift
/// MegatronFlagCatalog.byName["--num-experts"]?.feature   // "mixture of experts"
/// ```
enum MegatronFlagCatalog {
    static let all: [MegatronFlag] = MegatronFlagTable.groups.flatMap { $0.split(separator: "\n") }.map { line in
        let field = line.trimmingPrefix { $0 == " " }.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        precondition(field.count == 7, "malformed Megatron flag table line: \(line)")
        return MegatronFlag(names: field[0].split(separator: " ").map(String.init), dest: field[1], group: field[2],
                            action: MegatronFlag.Action(rawValue: field[3])!,
                            defaultValue: field[4].isEmpty ? nil : String(field[4].dropFirst()),
                            choices: field[5].split(separator: " ").map(String.init), feature: field[6])
    }

    static let byName: [String: MegatronFlag] = Dictionary(all.flatMap { flag in flag.names.map { ($0, flag) } },
                                                           uniquingKeysWith: { first, _ in first })

    /// Megatron's YAML keys are argparse dests.
    static let byDest: [String: MegatronFlag] = Dictionary(all.map { ($0.dest, $0) }, uniquingKeysWith: { first, _ in first })
}
