import Foundation
import XCTest
import MegatronCore
import MegatronParallel
@testable import MegatronTraining
import MegatronTestSupport

/// Megatron's `--log-*` flags on real runs: the start-up and checkpoint lines in Megatron's order, the
/// parameter norm and zero count (against the model itself, and across tensor- and data-parallel thread
/// ranks against one rank), the TensorBoard scalars each flag asks for, the timers, `progress.txt`, and the
/// logging flags this build refuses.
final class LoggingFlagsTests: XCTestCase {
    /// The embedded corpus (byte tokens; quick to set up). Untied embeddings: rows of tokens a batch does not
    /// use get no gradient, so the zero count is large and the same in every layout. The vocabulary (257) pads
    /// to 512 at TP 1 and 2 alike.
    private let base = "--num-layers 1 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
        + "--micro-batch-size 2 --global-batch-size 8 --lr 3e-3 --eval-iters 1 --hidden-dropout 0 --attention-dropout 0 --device cpu "
        + "--seed 7 --untie-embeddings-and-output-weights --make-vocab-size-divisible-by 256"

    private var root: URL!

    override func setUpWithError() throws { root = scratchPath("logging") }

    private func arguments(_ extra: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse((base + " " + extra).split(separator: " ").map(String.init))
    }

    /// Rank 0's lines of a one-rank run, and the trainer.
    private func train(_ extra: String) throws -> ([String], Pretrainer) {
        var lines: [String] = []
        let trainer = try Pretrainer(arguments: try arguments(extra)) { lines.append($0) }
        _ = try trainer.run()
        return (lines, trainer)
    }

    /// Every rank's lines of a run on `world` thread ranks (rank 0's first).
    private func train(world: Int, _ extra: String) throws -> [[String]] {
        let args = try arguments(extra)
        return try ThreadCommunicator.run(worldSize: world) { comm -> [String] in
            var lines: [String] = []
            let training = try TrainingWorld.make(args, world: comm)
            _ = try Pretrainer(arguments: args, parallel: training.parallel) { lines.append($0) }.run()
            return lines
        }
    }

    /// The text after `field: ` up to the next ` |` in the last iteration line.
    private func lastValue(_ field: String, _ lines: [String]) -> String? {
        guard let line = lines.last(where: { $0.contains("] iteration ") }), let start = line.range(of: " \(field): ") else { return nil }
        return String(line[start.upperBound...].prefix { $0 != " " })
    }

    func testStartupAndCheckpointLinesComeInMegatronsOrder() throws {
        let (lines, trainer) = try train("--train-iters 2 --log-interval 1 --save \(root.path) --save-interval 2")
        let parameters = trainer.model.namedParameters().map { $0.1.count }.reduce(0, +)
        let markers = ["------------------------ arguments ------------------------",
                       "-------------------- end of arguments ---------------------",
                       " > padded vocab (size: 257) with 255 dummy tokens (new size: 512)", "building GPT model ...",
                       " > number of parameters on (tensor, pipeline) model parallel rank (0, 0): \(parameters)",
                       "[after model, optimizer, and learning rate scheduler are built] datetime: ",
                       "[after dataloaders are built] datetime: ", "done with setup ...",
                       "INFO:megatron.core.timers:(min, max) time across ranks (ms):\n    model-and-optimizer-setup ......................: (",
                       "training ...", "[before the start of training step] datetime: ", " [", "] saving checkpoint at iteration       2 to \(root.path) in ",
                       "] successfully saved checkpoint from iteration       2 to \(root.path) [ t 1/1, p 1/1 ]",
                       "INFO:megatron.core.timers:(min, max) time across ranks (ms):\n    save-checkpoint ................................: (",
                       "[after training is done] datetime: ", " validation loss at iteration 2 on validation set | lm loss value: "]
        var at = 0
        for marker in markers {
            let found = lines[at...].firstIndex { $0.hasPrefix(marker) || ($0.contains(marker) && !marker.hasPrefix(" [")) }
            XCTAssertNotNil(found, "'\(marker)' after line \(at):\n" + lines.joined(separator: "\n"))
            at = (found ?? at) + 1
        }
        let stamp = try NSRegularExpression(pattern: #"^\[[a-z ,]+\] datetime: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} $"#)
        let stamped = lines.filter { $0.contains("] datetime: ") }
        XCTAssertEqual(stamped.count, 4)
        for line in stamped { XCTAssertNotNil(stamp.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)), line) }
        XCTAssertTrue(lines.contains("  log_params_norm ................................. False"))
        XCTAssertTrue(lines.contains("  world_size ...................................... 1"))
    }

    /// The logged parameter norm is the trained model's, and the zero count its last gradients' zeros.
    func testParamsNormAndZerosAreTheModelsOwn() throws {
        let (lines, trainer) = try train("--train-iters 3 --log-interval 1 --log-params-norm --log-num-zeros-in-grad")
        let parameters = trainer.model.namedParameters().map(\.1)
        let norm = parameters.map { $0.floats().reduce(0.0) { $0 + Double($1) * Double($1) } }.reduce(0, +).squareRoot()
        let zeros = parameters.compactMap(\.grad).map { $0.floats().count { $0 == 0 } }.reduce(0, +)
        XCTAssertGreaterThan(zeros, 1000, "unused embedding rows")
        XCTAssertEqual(lines.filter { $0.contains(" num zeros: ") && $0.contains(" params norm: ") }.count, 3)
        XCTAssertEqual(lastValue("num zeros", lines), "\(zeros).0")
        XCTAssertEqual(Double(lastValue("params norm", lines) ?? "") ?? 0, norm, accuracy: 1.5e-3)
        let (plain, _) = try train("--train-iters 1 --log-interval 1")
        XCTAssertFalse(plain.contains { $0.contains("num zeros") || $0.contains("params norm") })
    }

    /// Tensor-parallel slices, duplicated norms, sharded optimizer state and averaged gradients all give the
    /// one-rank numbers: each parameter counts once, summed over the ranks that hold parts of it. Without
    /// biases: the key bias's gradient is zero in exact arithmetic, so which of its elements come out exactly
    /// 0.0 depends on the order of the sums.
    func testParamsNormAndZerosMatchOneRankOnParallelRanks() throws {
        let flags = "--train-iters 2 --log-interval 1 --log-params-norm --log-num-zeros-in-grad --disable-bias-linear"
        let single = try train(world: 1, flags)[0]
        let zeros = try XCTUnwrap(lastValue("num zeros", single))
        let norm = try XCTUnwrap(Double(lastValue("params norm", single) ?? ""))
        for (world, layout) in [(2, "--tensor-model-parallel-size 2"),
                                (4, "--tensor-model-parallel-size 2 --sequence-parallel --use-distributed-optimizer"),
                                (2, "--use-distributed-optimizer"), (2, "")] {
            let ranks = try train(world: world, flags + " " + layout)
            XCTAssertEqual(lastValue("num zeros", ranks[0]), zeros, "world \(world) \(layout)")
            XCTAssertEqual(Double(lastValue("params norm", ranks[0]) ?? "") ?? 0, norm, accuracy: 2e-3, "world \(world) \(layout)")
            // Each data-parallel rank 0 prints its own slice's parameter count, as Megatron does.
            let counts = ranks.flatMap { $0.filter { $0.hasPrefix(" > number of parameters on") } }
            XCTAssertEqual(counts.count, layout.contains("tensor") ? 2 : 1, "\(counts)")
        }
    }

    /// Megatron's MoE tracker writes the aux losses under their log names at every iteration; at --log-interval 1
    /// the scalars are the values the lines print.
    func testMoELossesAreTensorBoardScalarsEveryIteration() throws {
        let directory = root.appendingPathComponent("moe")
        let (lines, _) = try train("--train-iters 3 --log-interval 1 --tensorboard-dir \(directory.path) --tensorboard-log-interval 2 "
                                   + "--num-experts 4 --moe-router-topk 2 --moe-aux-loss-coeff 0.01 --moe-z-loss-coeff 0.001 --disable-bias-linear")
        let scalars = try TensorBoardEventReader.scalars(in: directory)
        for name in ["load_balancing_loss", "z_loss"] {
            XCTAssertEqual(scalars[name]?.map(\.step), [1, 2, 3], name)
            let printed = lines.filter { $0.contains("] iteration ") }.compactMap { line in
                line.range(of: " \(name): ").map { Double(line[$0.upperBound...].prefix { $0 != " " })! }
            }
            XCTAssertEqual(printed.count, 3, name)
            for (value, shown) in zip(scalars[name]!.map(\.value), printed) {
                XCTAssertEqual(Double(value), shown, accuracy: abs(shown) * 1e-5, name)
            }
        }
        XCTAssertEqual(scalars["lm loss"]?.map(\.step), [2], "the other scalars keep --tensorboard-log-interval")
    }

    func testTensorBoardScalarsFollowTheFlags() throws {
        let on = root.appendingPathComponent("on"), off = root.appendingPathComponent("off")
        _ = try train("--train-iters 4 --log-interval 2 --eval-interval 2 --tensorboard-dir \(on.path) --log-params-norm "
                      + "--log-num-zeros-in-grad --log-timers-to-tensorboard --log-throughput --log-world-size-to-tensorboard "
                      + "--log-validation-ppl-to-tensorboard --timing-log-level 1 --log-memory-to-tensorboard")
        let scalars = try TensorBoardEventReader.scalars(in: on)
        func steps(_ tag: String) -> [Int] { scalars[tag]?.map(\.step) ?? [] }
        for tag in ["lm loss", "learning-rate", "batch-size", "loss-scale", "grad-norm", "params-norm", "num-zeros", "world-size"] {
            XCTAssertEqual(steps(tag), [1, 2, 3, 4], tag)
            XCTAssertEqual(steps(tag + " vs samples"), [8, 16, 24, 32], tag)
        }
        XCTAssertEqual(scalars["world-size"]?.map(\.value), [1, 1, 1, 1])
        // Timers go with the log lines; the iteration time leaves out the run's first (it carries start-up work).
        XCTAssertEqual(steps("iteration-time"), [2, 4])
        for tag in ["throughput", "forward-backward-time", "optimizer-time"] { XCTAssertEqual(steps(tag), [1, 2, 4], tag) }
        XCTAssertEqual(steps("lm loss validation"), [2, 4, 4])
        XCTAssertEqual(steps("lm loss validation ppl"), [2, 4, 4])
        XCTAssertEqual(steps("lm loss validation vs samples"), [16, 32, 32])
        let zeros = scalars["num-zeros"]!.map { Int($0.value) }
        XCTAssertTrue(zeros.allSatisfy { $0 > 1000 }, "\(zeros)")
        XCTAssertNil(scalars["mem-allocated-bytes"], "no GPU memory on the CPU")

        _ = try train("--train-iters 4 --log-interval 2 --eval-interval 2 --tensorboard-dir \(off.path) "
                      + "--tensorboard-log-interval 2 --no-log-loss-scale-to-tensorboard")
        let plain = try TensorBoardEventReader.scalars(in: off)
        XCTAssertEqual(plain["lm loss"]?.map(\.step), [2, 4])
        for tag in ["loss-scale", "params-norm", "num-zeros", "world-size", "iteration-time", "throughput", "optimizer-time",
                    "lm loss validation ppl"] {
            XCTAssertNil(plain[tag], tag)
        }
        XCTAssertEqual(plain["lm loss validation"]?.map(\.step), [2, 4, 4])
    }

    /// Events wait in the writer's queue until it is full or flushed.
    func testTensorBoardQueueHoldsEventsUntilFull() throws {
        let writer = try TensorBoardWriter(directory: root.path, queueSize: 3)
        writer.scalar("a", 1, step: 1)
        writer.scalar("a", 2, step: 2)
        XCTAssertNil(try TensorBoardEventReader.scalars(in: root)["a"])
        writer.scalar("a", 3, step: 3)
        XCTAssertEqual(try TensorBoardEventReader.scalars(in: root)["a"]?.map(\.value), [1, 2, 3])
        writer.scalar("a", 4, step: 4)
        writer.flush()
        XCTAssertEqual(try TensorBoardEventReader.scalars(in: root)["a"]?.map(\.step), [1, 2, 3, 4])
    }

    func testTimerReportsFollowLevelOptionAndLoggingLevel() throws {
        let (lines, _) = try train("--train-iters 2 --log-interval 2 --timing-log-level 2")
        let block = try XCTUnwrap(lines.last { $0.hasPrefix("INFO:megatron.core.timers:") }).split(separator: "\n").map(String.init)
        XCTAssertEqual(block.first, "INFO:megatron.core.timers:(min, max) time across ranks (ms):")
        XCTAssertEqual(block.dropFirst().map { String($0.prefix(while: { $0 != "." }).dropFirst(4).dropLast()) },
                       ["forward-backward", "optimizer", "batch-generator", "forward-compute", "backward-compute"])
        let pattern = try NSRegularExpression(pattern: #"^    [a-z-]+ \.+: \((\d+\.\d\d), (\d+\.\d\d)\)$"#)
        for line in block.dropFirst() { XCTAssertNotNil(pattern.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)), line) }

        let (all, _) = try train("--train-iters 2 --log-interval 2 --timing-log-level 1 --timing-log-option all")
        XCTAssertTrue(all.contains { $0.hasPrefix("INFO:megatron.core.timers:times across ranks (ms):\n  forward-backward:\n     rank  0: ") })
        let (quiet, _) = try train("--train-iters 2 --log-interval 2 --timing-log-level 2 --logging-level 30")
        XCTAssertFalse(quiet.contains { $0.contains("time across ranks") })
        let (levelZero, _) = try train("--train-iters 2 --log-interval 2")
        XCTAssertFalse(levelZero.contains { $0.contains("forward-backward") }, "level 0 times only set-up and saves")
    }

    /// progress.txt: the job's start, then a line per checkpoint with throughputs, operations and tokens, over
    /// a resumed job too.
    func testProgressLogRecordsJobsAndCheckpoints() throws {
        let flags = "--train-iters 4 --log-interval 2 --log-progress --save \(root.path) --save-interval 2"
        // The first trainer goes before the second starts: it holds the --save directory's lock while it lives.
        let perIteration = try {
            let (_, trainer) = try train(flags + " --exit-interval 2")
            return trainingFLOPs(config: trainer.model.config, vocabSize: trainer.model.vocabSize, sequenceLength: 16, batchSize: 8)
        }()
        _ = try train(flags + " --load \(root.path)")
        let lines = try String(contentsOf: root.appendingPathComponent("progress.txt"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertEqual(lines.map { $0[3] }, ["Starting job", "Saved checkpoint", "Starting job", "Saved checkpoint"])
        for fields in lines {
            XCTAssertNotNil(ProgressLog.parseTime(fields[0]), fields[0])
            XCTAssertEqual(fields[1], "Job ID: " + (ProcessInfo.processInfo.environment["SLURM_JOB_ID"] ?? ""))
            XCTAssertEqual(fields[2], "# GPUs: 1")
        }
        XCTAssertEqual(lines[1][4], "Iteration: 2")
        XCTAssertEqual(lines[3][4], "Iteration: 4")
        XCTAssertTrue(lines[1][5].hasPrefix("Job throughput: ") && lines[1][5].hasSuffix(" TFLOP/s/GPU"), lines[1][5])
        XCTAssertTrue(lines[3][6].hasPrefix("Cumulative throughput: "), lines[3][6])
        XCTAssertEqual(lines[1][7], "Floating-point operations: " + String(format: "%.2e", 2 * perIteration))
        XCTAssertEqual(lines[3][7], "Floating-point operations: " + String(format: "%.2e", 4 * perIteration), "counted on from the checkpoint")
        XCTAssertEqual(lines[3][8], "Tokens (in billions): 0.00")
        let log = ProgressLog(directory: root.path, worldSize: 1)
        let (start, flopsThen) = try XCTUnwrap(try log.cumulativeStart())
        XCTAssertEqual(ProgressLog.time(start), lines[0][0], "the first job of this world size")
        XCTAssertEqual(flopsThen, 0)
    }

    func testRefusedAndInconsistentLoggingFlagsSayWhy() throws {
        let refusal = "pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):\n"
        XCTAssertThrowsError(try arguments("--train-iters 1 --wandb-project p --wandb-exp-name e --wandb-save-dir d --wandb-entity x --log-energy")) {
            XCTAssertEqual("\($0)", refusal + "  Weights & Biases logging (use --tensorboard-dir): --wandb-project p, --wandb-exp-name e, "
                + "--wandb-save-dir d, --wandb-entity x\n  energy logging (NVML energy counters): --log-energy")
        }
        XCTAssertNoThrow(try arguments("--train-iters 1 --no-one-logger"))
        for (flags, message) in [("--log-interval 2 --log-memory-interval 3", "--log-memory-interval (3) must be a positive multiple of --log-interval (2)"),
                                 ("--tensorboard-log-interval 0", "--tensorboard-log-interval must be positive, got 0")] {
            XCTAssertThrowsError(try arguments("--train-iters 1 " + flags).validate()) { XCTAssertEqual("\($0)", message) }
        }
        XCTAssertThrowsError(try arguments("--train-iters 1 --timing-log-level 3")) {
            XCTAssertEqual("\($0)", "--timing-log-level must be one of 0, 1, 2, got 3")
        }
        XCTAssertThrowsError(try arguments("--train-iters 1 --timing-log-option some")) {
            XCTAssertEqual("\($0)", "--timing-log-option must be one of max, minmax, all, got 'some'")
        }
    }
}
