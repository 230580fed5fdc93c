import Foundation
import XCTest
@testable import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

/// The checkpoint metadata reader on thousands of random and mutated `metadata.json` and tracker files (a fixed
/// seed): each one loads as a valid checkpoint or is refused with a `CheckpointError`; nothing traps.
final class CheckpointMetadataFuzzTests: XCTestCase {
    var root: URL!
    var store: CheckpointDirectory { CheckpointDirectory(root: root) }
    var metadataFile: URL { root.appendingPathComponent("iter_0000001/metadata.json") }
    var trackerFile: URL { root.appendingPathComponent(CheckpointDirectory.trackerName) }

    override func setUpWithError() throws {
        root = scratchPath("ckpt-fuzz")
        let args = try MegatronArgumentParser.parse(
            ("--num-layers 1 --hidden-size 8 --num-attention-heads 2 --seq-length 8 --max-position-embeddings 8 --micro-batch-size 1 "
             + "--global-batch-size 1 --lr 1e-3 --train-iters 1 --eval-iters 1 --device cpu --ckpt-format safetensors --save \(root.path) --save-interval 1")
                .split(separator: " ").map(String.init))
        _ = try Pretrainer(arguments: args) { _ in }.run()
    }

    /// Everything a resume (and `megatron generate` / `convert`) reads from the metadata, as strictly as they read it.
    func readEverything() throws {
        guard let checkpoint = try store.loadLatest() else { return }
        _ = try GPTCheckpoint.model(of: checkpoint)
        try Pretrainer.requireRecordedShapes(checkpoint)
        let progress = try checkpoint.metadata.decode(SavedProgress.self)
        let optimizer = try checkpoint.metadata.decode(SavedOptimizer.self)
        let rng = try checkpoint.metadata.decode(SavedRNG.self).rng
        if progress.consumedSamples < 0 || optimizer.optimizerSteps < 0 || rng.dropoutOffset < 0 || rng.tensorParallelDropoutOffset < 0 {
            throw CheckpointError("negative")
        }
    }

    /// Counts of (valid, refused) over `cases`; any other error fails the test.
    func outcomes(_ cases: Int, _ body: (inout SplitMix64, Int) throws -> Void) throws -> (Int, Int) {
        var generator = SplitMix64(seed: 20_240_611)
        var (valid, refused) = (0, 0)
        for index in 0..<cases {
            try body(&generator, index)
            do {
                try readEverything()
                valid += 1
            } catch is CheckpointError {
                refused += 1
            }
        }
        return (valid, refused)
    }

    func testRandomAndMutatedMetadataLoadsOrIsRefused() throws {
        let original = try Data(contentsOf: metadataFile)
        // The run's arguments, which no reader looks at, are left out: the cases go to the fields read.
        var values = try store.load(iteration: 1).metadata.values
        values["args"] = nil
        var (valid, refused) = try outcomes(800) { generator, index in
            try Self.mutatedBytes(original, &generator, index).write(to: metadataFile)
        }
        XCTAssertGreaterThan(refused, 760, "the checksum refuses byte-level damage")
        // Changed values behind a valid checksum: the strict field reader alone decides.
        let fields = try outcomes(800) { generator, _ in
            var edited = values
            edited["metadata_crc32c"] = nil
            edited["metadata_checksummed"] = nil
            Self.mutate(&edited, &generator, depth: 0)
            try CheckpointMetadata.encode(edited).write(to: metadataFile)
        }
        valid += fields.0
        refused += fields.1
        XCTAssertGreaterThan(fields.0, 50, "edits of fields the reader ignores still load")
        XCTAssertGreaterThan(fields.1, 500, "edits of fields it needs are refused")
        try original.write(to: metadataFile)
        XCTAssertNoThrow(try readEverything())
        print("metadata fuzz: \(valid) valid loads, \(refused) refused")
    }

    func testRandomTrackersLoadOrAreRefused() throws {
        let samples = ["1", "release", "0", "-1", "01", "1\n", " 1 ", "+1", "1.0", "1e0", "99999999999999999999999", "\u{661}",
                       "", "\n", "relEase", "1 2", String(repeating: "1", count: 100), "\0"]
        var namesIterationOne = 0
        let (valid, refused) = try outcomes(400) { generator, index in
            let text: Data
            if index < samples.count {
                text = Data(samples[index].utf8)
            } else {
                text = Data((0..<generator.next(below: 12)).map { _ in
                    generator.next(below: 2) == 0 ? UInt8(ascii: "0") + UInt8(generator.next(below: 10)) : UInt8(generator.next(below: 256))
                })
            }
            try text.write(to: trackerFile)
            // The only checkpoint is iteration 1: a tracker loads when it is that number in ASCII digits.
            let value = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !value.isEmpty, value.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), Int(value) == 1 {
                namesIterationOne += 1
            }
        }
        XCTAssertGreaterThanOrEqual(namesIterationOne, 4, "1, 01, \"1\\n\" and \" 1 \" at least")
        XCTAssertEqual(valid, namesIterationOne)
        XCTAssertEqual(valid + refused, 400)
    }

    /// Byte-level damage: flips, truncation, insertion, random files, deep nesting.
    static func mutatedBytes(_ original: Data, _ generator: inout SplitMix64, _ index: Int) -> Data {
        var bytes = [UInt8](original)
        switch index % 6 {
        case 0:
            for _ in 0...generator.next(below: 4) { bytes[generator.next(below: bytes.count)] ^= UInt8(1 + generator.next(below: 255)) }
        case 1: bytes = Array(bytes.prefix(generator.next(below: bytes.count)))
        case 2: bytes.insert(contentsOf: (0..<1 + generator.next(below: 8)).map { _ in UInt8(generator.next(below: 256)) },
                             at: generator.next(below: bytes.count))
        case 3: bytes = (0..<generator.next(below: 300)).map { _ in UInt8(generator.next(below: 256)) }
        case 4: bytes = Array((String(repeating: "[", count: 1 + generator.next(below: 100_000))).utf8)
        default:
            let at = generator.next(below: bytes.count), length = generator.next(below: 64)
            bytes.removeSubrange(at..<min(bytes.count, at + length))
        }
        return Data(bytes)
    }

    /// Replaces or removes one member somewhere in `values` with a value of another kind.
    static func mutate(_ values: inout [String: Any], _ generator: inout SplitMix64, depth: Int) {
        guard !values.isEmpty else { return }
        let keys = values.keys.sorted()
        let key = keys[generator.next(below: keys.count)]
        if depth < 3, var nested = values[key] as? [String: Any], generator.next(below: 3) > 0 {
            mutate(&nested, &generator, depth: depth + 1)
            values[key] = nested
            return
        }
        let replacements: [Any?] = [nil, -1, 0, 1, Int.max, Int.min, -0.5, 1e300, "x", "", true, NSNull(), [Any](), [1, -2],
                                    ["a": 1], [[[[["deep"]]]]], 3_000_000_000, generator.next(below: 1 << 20)]
        values[key] = replacements[generator.next(below: replacements.count)]
    }
}
