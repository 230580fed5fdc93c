import Foundation
import XCTest
import MegatronCUDA
@testable import MegatronTraining

/// Our start-up, iteration, timer, checkpoint and validation lines against
/// Fixtures/megatron-log-core_v0.18.2.txt: the lines Megatron-LM core_v0.18.2 prints for the same values,
/// made by scripts/fixtures/make_megatron_log_excerpt.py with that version's format strings.
final class MegatronLogFormatTests: XCTestCase {
    let excerpt: [String] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/megatron-log-core_v0.18.2.txt")
        return (try? String(contentsOf: url, encoding: .utf8))?.split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init) ?? []
    }()

    /// The excerpt's line starting with `prefix` (and the lines after it).
    private func line(_ prefix: String, count: Int = 1) throws -> [String] {
        let start = try XCTUnwrap(excerpt.firstIndex { $0.hasPrefix(prefix) }, "no line starts with '\(prefix)'")
        return Array(excerpt[start..<(start + count)])
    }

    /// The local time a `%Y-%m-%d %H:%M:%S.%f` stamp names.
    private func date(_ text: String) -> Date {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        let parts = text.split(separator: ".")
        return formatter.date(from: String(parts[0]))!.addingTimeInterval(Double(parts[1])! / 1e6)
    }

    /// Megatron's `_print_args` for the same values, among the arguments only we print.
    func testArgumentsDumpPrintsAsMegatron() throws {
        var arguments = PretrainArguments()
        arguments.adamBeta1 = 0.9
        arguments.dataPath = ["0.3", "a_text_document", "0.7", "b_text_document"]
        arguments.globalBatchSize = 8
        arguments.lr = 6e-5
        arguments.lrWarmupFraction = 0.01
        arguments.minLR = 6e-6
        arguments.split = "949,50,1"
        arguments.trainIters = 10
        let ours = ArgumentsDump(arguments, world: .single).lines()
        let theirs = try line("------------------------ arguments", count: 15)
        XCTAssertEqual(ours.first, theirs.first)
        XCTAssertEqual(ours.last, theirs.last)
        XCTAssertEqual(ours.filter { theirs.contains($0) }, theirs, "the same lines in the same order")
        XCTAssertEqual(ours.dropFirst().dropLast().map { $0.lowercased() }, ours.dropFirst().dropLast().map { $0.lowercased() }.sorted())
        XCTAssertTrue(ours.contains("  log_params_norm ................................. False"))
    }

    func testPropertyNamesBecomeMegatronDestinations() {
        for (property, dest) in [("numLayers", "num_layers"), ("minLR", "min_lr"), ("lrWSDDecayStyle", "lr_wsd_decay_style"),
                                 ("addQKVBias", "add_qkv_bias"), ("noLoadRNG", "no_load_rng"), ("bf16", "bf16"),
                                 ("useCheckpointOptParamScheduler", "use_checkpoint_opt_param_scheduler")] {
            XCTAssertEqual(ArgumentsDump.megatronName(property), dest)
        }
    }

    /// Python's `str()` of the values arguments hold.
    func testValuesPrintAsPython() {
        let cases: [(Any, String)] = [(Float(6e-5), "6e-05"), (Float(0.00015), "0.00015"), (Float(4_294_967_296), "4294967296.0"),
                                      (Float(0.01), "0.01"), (Float(1e-5), "1e-05"), (Float(1), "1.0"), (Float(0.1), "0.1"),
                                      (1e16, "1e+16"), (1e15, "1000000000000000.0"), (-2.5e-7, "-2.5e-07"), (Float(0), "0.0"),
                                      (true, "True"), (Optional<Int>.none as Any, "None"), (Optional(3) as Any, "3"),
                                      (["a", "it's"], "['a', \"it's\"]"), ("949,50,1", "949,50,1")]
        for (value, text) in cases { XCTAssertEqual(PythonText.value(value), text, "\(value)") }
    }

    func testSetupLinesPrintAsMegatron() throws {
        XCTAssertEqual(MegatronLogLines.paddedVocabulary(size: 50257, padded: 50304), try line(" > padded vocab")[0])
        XCTAssertEqual(MegatronLogLines.parameterCount(tensorRank: 0, count: 124_475_904), try line(" > number of parameters")[0])
        for (event, stamp) in [("after model, optimizer, and learning rate scheduler are built", "2026-12-07 12:00:00.123456"),
                               ("after dataloaders are built", "2026-12-07 12:00:01.234567"),
                               ("before the start of training step", "2026-12-07 12:00:01.345678"),
                               ("after training is done", "2026-12-07 12:00:05.000000")] {
            XCTAssertEqual(MegatronLogLines.datetime(event, at: date(stamp)), try line("[\(event)]")[0])
        }
    }

    /// Megatron's timers.log block, (min, max) over two ranks.
    func testTimerReportPrintsAsMegatron() throws {
        let names = ["model-and-optimizer-setup", "train/valid/test-data-iterators-setup"]
        let (text, maxima) = TrainingTimers.report(names, table: [[1.0229700, 0.19027], [1.02090, 0.292]], option: .minmax,
                                                   normalizer: 1)
        XCTAssertEqual("INFO:megatron.core.timers:" + (text ?? ""), try line("INFO:megatron.core.timers", count: 3).joined(separator: "\n"))
        XCTAssertEqual(maxima.map(\.0), names)
        XCTAssertEqual(maxima[1].1, 0.292, accuracy: 1e-12)
        let perIteration = TrainingTimers.report(["forward-backward", "optimizer", "never-ran"],
                                                 table: [[1.005, 0.125, 0], [1.0125, 0.12, 0]], option: .minmax, normalizer: 10)
        XCTAssertEqual(perIteration.text, "(min, max) time across ranks (ms):\n"
                       + (try line("    forward-backward", count: 2)).joined(separator: "\n"))
        XCTAssertEqual(TrainingTimers.report(["optimizer"], table: [[0.5], [0.25]], option: .max, normalizer: 1).text,
                       "max time across ranks (ms):\n    optimizer ......................................: 500.00")
        XCTAssertEqual(TrainingTimers.report(["optimizer"], table: [[0.5], [0.25]], option: .all, normalizer: 1).text,
                       "times across ranks (ms):\n  optimizer:\n     rank  0: 500.00\n     rank  1: 250.00")
    }

    func testIterationLinePrintsAsMegatron() throws {
        let entry = TrainingLogEntry(iteration: 10, trainIters: 100, consumedSamples: 80, elapsedMillisecondsPerIteration: 123.45,
                                     throughput: 42.25, learningRate: 6e-5, globalBatchSize: 8, lmLoss: 10.8234, lossScale: 1,
                                     gradNorm: 3.14159, numZeros: 1234, paramsNorm: 271.8281, skippedIterations: 0, nanIterations: 0)
        XCTAssertEqual(entry.formatted(timestamp: date("2026-12-07 12:00:02.456789")), try line(" [2026-12-07 12:00:02")[0])
    }

    func testMemoryCheckpointAndValidationLinesPrintAsMegatron() throws {
        var stats = AllocatorStatistics()
        (stats.allocatedBytes, stats.peakAllocatedBytes, stats.reservedBytes, stats.peakReservedBytes) = (123_456_512, 2 << 20, 3 << 30, 5 << 30)
        XCTAssertEqual(MemoryReport(statistics: stats).line(rank: 0, iterations: 10), try line("[Rank 0]")[0])
        XCTAssertEqual(MegatronLogLines.savingCheckpoint(iteration: 10, directory: "ckpt", format: "torch_dist",
                                                         at: date("2026-12-07 12:00:03.000001")),
                       try line("[2026-12-07 12:00:03.000001] saving")[0])
        XCTAssertEqual(MegatronLogLines.savedCheckpoint(iteration: 10, directory: "ckpt", tensor: (0, 2),
                                                        at: date("2026-12-07 12:00:04.500000")),
                       try line("  [2026-12-07 12:00:04.500000] successfully saved")[0])
        XCTAssertEqual(MegatronLogLines.loadedCheckpoint(directory: "ckpt", iteration: 10, tensor: (0, 2)),
                       try line("  successfully loaded")[0])
        var printed: [String] = []
        let reporter = try TrainingReporter(arguments: PretrainArguments(), log: { printed.append($0) }, rankLog: { _ in },
                                            parallel: .singleRank(), device: .cpu)
        reporter.evaluationFinished(loss: 9.87654, name: "validation", prefix: "iteration 10 on validation set", iteration: 10,
                                    consumedSamples: 80)
        XCTAssertEqual(printed, try line("-----------------------------------", count: 3))
    }
}
