import XCTest
@testable import MegatronTraining

/// `megatron pretrain-gpt --help` lists every supported flag, in Megatron's argparse groups, with its default.
final class PretrainHelpTests: XCTestCase {
    let help = PretrainHelp.text()

    func testEveryFlagOfTheTableIsListedWithALineOfHelp() {
        for flag in PretrainFlags.all {
            XCTAssertTrue(help.contains(" \(flag.name) ") || help.contains(" \(flag.name)\n") || help.contains(" \(flag.name),"),
                          "\(flag.name) is not in --help")
            XCTAssertNotNil(FlagDescriptions.text[flag.name].flatMap { $0.isEmpty ? nil : $0 },
                            "\(flag.name) has no line in FlagDescriptions")
        }
        XCTAssertEqual(Set(FlagDescriptions.text.keys).subtracting(PretrainFlags.all.map(\.name)), [],
                       "descriptions of flags the table does not have")
        XCTAssertTrue(help.split(separator: "\n").allSatisfy { $0.count < 80 }, "ArgumentParser rewraps lines of 80 columns")
    }

    /// Defaults come from `PretrainArguments()`, required flags say so, and groups are Megatron's.
    func testDefaultsAndGroups() {
        func entry(_ name: String) -> String {
            let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let start = lines.firstIndex(where: { $0.hasPrefix("  \(name) ") || $0 == "  \(name)" || $0.hasPrefix("  \(name),") })
            else { return "" }
            let rest = lines[(start + 1)...].prefix { $0.hasPrefix("    ") }
            return ([lines[start]] + rest).joined(separator: " ").split(separator: " ").joined(separator: " ")
        }
        XCTAssertEqual(entry("--eval-iters"), "--eval-iters N Batches per evaluation; 0 turns evaluation off. (default: 100)")
        XCTAssertEqual(entry("--num-layers"), "--num-layers N Transformer layers. (required)")
        XCTAssertEqual(entry("--initial-loss-scale"), "--initial-loss-scale X Starting value of the dynamic loss scale. (default: 4294967296)")
        XCTAssertEqual(entry("--norm-epsilon"), "--norm-epsilon X Epsilon of the normalization layers. (default: 1e-05)")
        XCTAssertEqual(entry("--normalization"), "--normalization LayerNorm|RMSNorm Normalization layer. (default: LayerNorm)")
        XCTAssertEqual(entry("--save-interval"), "--save-interval, --persistent-save-interval N Save every this many steps (required with --save).")
        XCTAssertEqual(entry("--no-manual-gc-eval"), "--no-manual-gc-eval, --disable-manual-gc-eval Accepted, no effect (there is no garbage collector).")
        let groups = help.split(separator: "\n").filter { !$0.hasPrefix(" ") && $0.hasSuffix(":") }.map(String.init)
        XCTAssertEqual(groups, ["transformer configuration:", "network size:", "regularization:", "profiling:", "training:",
                                "RNG and initialization:", "learning rate and weight decay:", "checkpointing:", "mixed precision:",
                                "distributed init:", "validation:", "data and dataloader:", "tokenizer:", "moe:", "mla:", "experimental_attention_variant:",
                                "logging:", "one logger:", "this program's own flags:"])
        let ownGroup = help.components(separatedBy: "this program's own flags:")[1]
        for own in ["--device", "--keep-last-checkpoints", "--config, --yaml-cfg FILE", "-h, --help"] {
            XCTAssertTrue(ownGroup.contains(own), own)
        }
    }
}
