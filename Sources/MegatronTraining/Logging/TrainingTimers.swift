import Foundation
import MegatronParallel
import MegatronTensor

/// Megatron's named timers (`megatron/core/timers.py`) at `--timing-log-level` granularity: level 0 times
/// only what the log line and the setup report need, at no cost to the iteration; level 1 adds the phases run
/// once per iteration (`forward-backward`, `optimizer`, `optimizer-count-zeros`) and level 2 those run per
/// micro-batch (`batch-generator`, `forward-compute`, `backward-compute`). Timers of level 1 and 2 wait for the
/// device at their start and stop, so they measure the GPU's work (level 1 also waits for every rank first,
/// unless `--no-barrier-with-level-1-timing`).
///
/// A report gathers every rank's times and prints them as `--timing-log-option` asks: each timer's max, or
/// (min, max), over the ranks, or every rank's.
///
/// ```swift
/// let timers = TrainingTimers(level: 1, option: .minmax, device: .cpu, world: nil)
/// try timers.time("optimizer", level: 1) { try step() }
/// let running = try timers.start("forward-backward", level: 1)
/// ...
/// try timers.stop(running)
/// if let text = try timers.report(["optimizer"], normalizer: 10) { print(text) }
/// ```
final class TrainingTimers {
    let level: Int
    let option: PretrainArguments.TimingLogOption
    let barrier: Bool
    let device: Device
    let world: Communicator?
    private var elapsed: [String: Double] = [:]

    /// The timers Megatron's iteration report lists at `level` (those this loop runs; others print nothing).
    static func iterationTimers(level: Int) -> [String] {
        (level >= 1 ? ["forward-backward", "optimizer-count-zeros", "optimizer"] : [])
            + (level >= 2 ? ["batch-generator", "forward-compute", "backward-compute"] : [])
    }

    init(level: Int, option: PretrainArguments.TimingLogOption, barrier: Bool = true, device: Device, world: Communicator?) {
        self.level = level
        self.option = option
        self.barrier = barrier
        self.device = device
        self.world = world
    }

    /// A running timer, from `start` to `stop`.
    struct Running {
        let name: String
        let level: Int
        let started: Date
    }

    /// Starts timer `name` when `timerLevel` is enabled (nil otherwise: `stop(nil)` does nothing).
    func start(_ name: String, level timerLevel: Int) throws -> Running? {
        guard timerLevel <= level else { return nil }
        if timerLevel >= 1 {
            if timerLevel == 1 && barrier { try world?.barrier() }
            try synchronizeDevice()
        }
        return Running(name: name, level: timerLevel, started: Date())
    }

    /// Stops a timer `start` returned, adding the time since its start.
    func stop(_ running: Running?) throws {
        guard let running else { return }
        if running.level >= 1 { try synchronizeDevice() }
        add(running.name, seconds: Date().timeIntervalSince(running.started))
    }

    /// Runs `body` under timer `name` (when `timerLevel` is enabled).
    func time<R>(_ name: String, level timerLevel: Int, _ body: () throws -> R) throws -> R {
        let running = try start(name, level: timerLevel)
        let result = try body()
        try stop(running)
        return result
    }

    /// Adds `seconds` to timer `name` (a phase timed by its caller, such as the set-up steps).
    func add(_ name: String, seconds: Double) {
        elapsed[name, default: 0] += seconds
    }

    /// Seconds timer `name` holds, summed over its runs since it was last reset.
    func seconds(_ name: String) -> Double { elapsed[name] ?? 0 }

    /// Every rank's seconds for each of `names` (a collective on the world); `[rank][name]`, zero where a
    /// rank never ran the timer. Resets the timers read unless `reset` is false.
    func gather(_ names: [String], reset: Bool = true) throws -> [[Double]] {
        let mine = names.map { seconds($0) }
        if reset { for name in names { elapsed[name] = nil } }
        guard let world, world.size > 1 else { return [mine] }
        var rows = [Float](repeating: 0, count: world.size * names.count)
        for (i, value) in mine.enumerated() { rows[world.rank * names.count + i] = Float(value) }
        let all = Tensor(shape: [rows.count], values: rows).to(device)
        try world.allReduce(all, op: .sum).wait()
        let values = all.to(.cpu).floats()
        return (0..<world.size).map { r in (0..<names.count).map { Double(values[r * names.count + $0]) } }
    }

    /// The text Megatron's `timers.log` prints for `names` (times in ms divided by `normalizer`), or nil when
    /// none ran; and each timer's maximum over the ranks in seconds divided by `normalizer`, what
    /// `timers.write` sends to TensorBoard as `<name>-time`. A collective on the world.
    func report(_ names: [String], normalizer: Double = 1, reset: Bool = true) throws -> (text: String?, maxima: [(String, Double)]) {
        guard !names.isEmpty else { return (nil, []) }
        return Self.report(names, table: try gather(names, reset: reset), option: option, normalizer: normalizer)
    }

    /// `report` of a gathered `[rank][name]` table of seconds.
    static func report(_ names: [String], table: [[Double]], option: PretrainArguments.TimingLogOption,
                       normalizer: Double) -> (text: String?, maxima: [(String, Double)]) {
        var maxima: [(String, Double)] = []
        var lines: [String] = []
        for (i, name) in names.enumerated() {
            let column = table.map { $0[i] }
            let ran = column.filter { $0 > 0 }
            guard let high = ran.max(), let low = ran.min() else { continue }
            maxima.append((name, high / normalizer))
            switch option {
            case .max: lines.append("    \(dotted(name)): \(milliseconds(high, normalizer))")
            case .all:
                lines.append("  \(name):")
                for (rank, value) in column.enumerated() where value > 0 {
                    lines.append("     rank \(MegatronLogLines.padded(rank, 2)): \(milliseconds(value, normalizer))")
                }
            case .minmax:
                lines.append("    \(dotted(name)): (\(milliseconds(low, normalizer)), \(milliseconds(high, normalizer)))")
            }
        }
        guard !lines.isEmpty else { return (nil, maxima) }
        let title = switch option {
        case .max: "max time across ranks (ms):"
        case .all: "times across ranks (ms):"
        case .minmax: "(min, max) time across ranks (ms):"
        }
        return (([title] + lines).joined(separator: "\n"), maxima)
    }

    private func synchronizeDevice() throws {
        guard let ordinal = device.ordinal else { return }
        try CUDAContext.shared(ordinal: ordinal).synchronize()
    }

    /// `(name + ' ').ljust(48, '.')`.
    private static func dotted(_ name: String) -> String {
        let text = name + " "
        return text + String(repeating: ".", count: max(0, 48 - text.count))
    }

    private static func milliseconds(_ seconds: Double, _ normalizer: Double) -> String {
        String(format: "%.2f", seconds * 1000 / normalizer)
    }
}
