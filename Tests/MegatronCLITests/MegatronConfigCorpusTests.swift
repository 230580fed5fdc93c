import Foundation
import XCTest
@testable import MegatronTraining

/// Issue 17's acceptance: 25 real Megatron flag sets (Fixtures/megatron-configs: Megatron-LM's examples for
/// GPT-3 175B, Llama-3 8B, Mixtral and gpt-oss, six model configs, fifteen functional tests), pasted as a user
/// pastes them and scaled down to a tiny model. Each either trains for 2 iterations on CPU thread ranks, or,
/// when it uses a feature the issue leaves to others (`OutOfScopeFeatures`), is refused with exactly those
/// flags named in one error; and then, without those flags, trains: nothing else in it is in the way. (Mock-data
/// configs skip that second run: indexing the mock dataset's 100,000 documents takes a debug build ~10 s.)
///
/// `knownBlockers` names what still stands in a config's way (flags no one has implemented yet): a blocked
/// config must fail on nothing else, and each blocker is re-checked in-process, so the test fails as soon as one
/// is gone and the table must shrink. Checkpoint-format flags are left-out features only where the config saves
/// or loads: without `--save` / `--load` they are accepted (`CommandLineParse.settleCheckpointFormatFlags`).
final class MegatronConfigCorpusTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/megatron-configs")

    /// Flag (or flag and value) to what would make it run here; none of this session's helpers owns them.
    static let knownBlockers: [String: String] = [:]

    /// Configs that Megatron itself (d98e8a64dd) refuses once their left-out features are gone: the flags its
    /// error names, and the one whose removal (from the config and its scale-down) lets the config run.
    static let refusedByMegatron: [String: (flags: Set<String>, drop: String, reason: String)] = [
        "gpt3_175b": (["--step-batch-size-schedule", "--global-batch-size"], "--global-batch-size",
                      "arguments.py: Cannot specify both --step-batch-size-schedule and --global-batch-size"),
        "gpt3_weekly_mcore_tp2_pp2_current_scaling_native_fp8_tp_pp_sp_tp_overlap": (
            ["--deterministic-mode", "--tp-comm-overlap"], "--deterministic-mode",
            "determinism.py: --deterministic-mode requires tp_comm_overlap=False"),
        "deepseek_v2_lite": (["--moe-layer-freq", "--num-layers"], "--moe-layer-freq",
                             "gpt_layer_specs.py: Invalid length of moe_layer_pattern (its 27 layers against the scale-down's 2)"),
    ]

    /// A tiny valid run that a blocker's flags are added to, to see whether they still fail on their own.
    static let probeBase = "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 1 --train-iters 2 --lr 1e-4"

    /// Whether `words` still fail to parse and validate on a tiny valid run.
    static func stillFails(_ words: [String]) -> Bool {
        do {
            try MegatronArgumentParser.parse(probeBase.split(separator: " ").map(String.init) + words).validate()
            return false
        } catch {
            return true
        }
    }

    /// The known blockers `config` uses: the key, the config's flag it covers and the words it is written with.
    static func blockers(of config: CorpusConfig) -> [(key: String, flag: String, words: [String])] {
        config.flags.compactMap { flag in
            let words = [flag.name] + flag.values
            let key = words.joined(separator: " ")
            if knownBlockers[key] != nil { return (key, flag.name, words) }
            return knownBlockers[flag.name] != nil ? (flag.name, flag.name, words) : nil
        }
    }

    /// The flags of `config` an error text names (not the spellings it suggests for an unknown flag, nor the
    /// flags a feature's name mentions in parentheses).
    static func named(in output: String, of config: CorpusConfig) -> Set<String> {
        let flags = Set(config.flags.map(\.name))
        var out: Set<String> = []
        let output = output.replacingOccurrences(of: #"; did you mean [^\n]*\?|\([^()\n]*\)"#, with: "", options: .regularExpression)
        let text = output as NSString
        let pattern = try! NSRegularExpression(pattern: #"--[A-Za-z0-9_-]+"#)
        for match in pattern.matches(in: output, range: NSRange(location: 0, length: text.length)) {
            let name = text.substring(with: match.range)
            if flags.contains(name) { out.insert(name) }
        }
        return out
    }

    func testCorpusHasItsTwentyFiveConfigsWithSources() throws {
        let configs = try CorpusConfig.all(in: Self.fixtures)
        XCTAssertEqual(configs.count, 25)
        XCTAssertEqual(configs.filter { $0.kind == .modelConfigYAML }.count, 15)
        for config in configs {
            XCTAssertTrue(config.source.hasPrefix("NVIDIA/Megatron-LM ") && config.source.contains(" @ "), config.name)
            XCTAssertFalse(config.flags.isEmpty, config.name)
            XCTAssertTrue(config.scaleDown.contains("--num-layers"), config.name)
        }
    }

    /// Each known blocker still blocks: once its flag works, this fails until the entry is removed.
    func testKnownBlockersStillBlock() throws {
        let configs = try CorpusConfig.all(in: Self.fixtures)
        var used: [String: [String]] = [:]
        for config in configs { for blocker in Self.blockers(of: config) { used[blocker.key] = blocker.words } }
        XCTAssertEqual(Set(Self.knownBlockers.keys).subtracting(used.keys), [], "blockers no config uses")
        for (key, words) in used.sorted(by: { $0.key < $1.key }) {
            XCTAssertTrue(Self.stillFails(words), "\(words.joined(separator: " ")) works now (\(Self.knownBlockers[key]!)): remove it from knownBlockers")
        }
    }

    func testRealConfigsTrainOrAreRefusedOnlyForFeaturesLeftToOtherIssues() throws {
        let workspace = try CorpusWorkspace(megatron: try MegatronProcess.built(), fixtures: Self.fixtures)
        defer { workspace.remove() }
        var report: [String] = []
        for config in try CorpusConfig.all(in: Self.fixtures) {
            let refused = OutOfScopeFeatures.flags(of: config)
            let blockers = Self.blockers(of: config).map { "\($0.key) (\(Self.knownBlockers[$0.key]!))" }
            let outcome = try workspace.run(config)
            let command = "megatron " + config.arguments(variables: [:]).joined(separator: " ")
            let named = Self.named(in: outcome.output, of: config)
            let allowed = refused.union(Self.blockers(of: config).map(\.flag))
            let trained = outcome.status == 0 && outcome.output.contains(" iteration        2/       2 |")
            if !blockers.isEmpty {
                report.append("\(config.name): blocked by \(blockers.joined(separator: ", "))")
                XCTAssertFalse(trained, "\(config.name) trains: its blockers \(blockers) are gone, remove them")
                XCTAssertNotEqual(outcome.status, 0, "\(config.name) exits 0 with blockers \(blockers):\n\(outcome.output)")
                XCTAssertTrue(named.isSubset(of: allowed),
                              "\(config.name) fails on \(named.subtracting(allowed).sorted()), not a known blocker or left-out feature:\n"
                              + "\(command)\n\(outcome.output.suffix(3000))")
            } else {
                // The config as written, or without its left-out features once they are refused as such.
                var (rest, run, label) = (config, outcome, "")
                if refused.isEmpty {
                    report.append("\(config.name): trains")
                } else {
                    report.append("\(config.name): refused for \(refused.sorted().joined(separator: " "))")
                    XCTAssertNotEqual(outcome.status, 0, "\(config.name) is not refused:\n\(outcome.output.suffix(3000))")
                    XCTAssertEqual(named, refused, "\(config.name) must name exactly its left-out features' flags:\n\(outcome.output.suffix(3000))")
                    guard !config.flags.contains(where: { $0.name == "--mock-data" }) else { continue }
                    rest = try config.without(refused, writingTo: workspace.root.appendingPathComponent("without/\(config.name)"))
                    run = try workspace.run(rest, attempt: "without-left-out-features")
                    label = " without \(refused.sorted())"
                }
                if let megatron = Self.refusedByMegatron[config.name] {
                    report[report.count - 1] = report[report.count - 1].replacingOccurrences(of: ": trains", with: ":")
                        + (refused.isEmpty ? " " : "; then ") + "as Megatron (\(megatron.reason)); trains without \(megatron.drop)"
                    XCTAssertNotEqual(run.status, 0, "\(config.name)\(label) is not refused as Megatron refuses it (\(megatron.reason))")
                    XCTAssertEqual(Self.named(in: run.output, of: config), megatron.flags,
                                   "\(config.name) must be refused as Megatron refuses it (\(megatron.reason)):\n\(run.output.suffix(3000))")
                    run = try workspace.run(try rest.without([megatron.drop], writingTo: workspace.root.appendingPathComponent("without-\(megatron.drop)/\(config.name)")),
                                            attempt: "without-\(megatron.drop)")
                    label += " and without \(megatron.drop)"
                }
                XCTAssertTrue(run.status == 0 && run.output.contains(" iteration        2/       2 |"),
                              "\(config.name)\(label) does not train:\n\(command)\n\(run.output.suffix(4000))")
                XCTAssertFalse(run.output.contains("lm loss: nan") || run.output.contains("lm loss: inf"), config.name)
            }
        }
        print("Megatron config corpus:\n  " + report.joined(separator: "\n  "))
    }
}
