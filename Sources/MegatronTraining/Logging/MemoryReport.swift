import MegatronCUDA
import MegatronTensor

/// GPU memory of the caching allocator, as Megatron reports it: the `report_memory` line printed after the
/// first logged iterations (and every `--log-memory-interval`), and the `mem-*` TensorBoard scalars of
/// `--log-memory-to-tensorboard`.
///
/// Only GPU memory is tracked (the caching allocator counts it); on the CPU there is no report.
///
/// ```swift
/// if let memory = MemoryReport.current(on: device) {
///     print(memory.line(rank: 0, iterations: 10))
///     // [Rank 0] (after 10 iterations) memory (MB) | allocated: 1523.50 | max allocated: 2807.25 | ...
/// }
/// ```
public struct MemoryReport: Equatable {
    public var statistics: AllocatorStatistics
    /// Memory in use on the whole device (every process's, as nvidia-smi shows it), for
    /// `--log-device-memory-used`; nil when not asked for.
    public var deviceUsedBytes: Int?

    public init(statistics: AllocatorStatistics, deviceUsedBytes: Int? = nil) {
        self.statistics = statistics
        self.deviceUsedBytes = deviceUsedBytes
    }

    /// The allocator's numbers for `device` now (and the device's used memory with `deviceUsed`); nil on the
    /// CPU, where memory is not tracked.
    public static func current(on device: Device, deviceUsed: Bool = false) -> MemoryReport? {
        guard let ordinal = device.ordinal, let context = try? CUDAContext.shared(ordinal: ordinal) else { return nil }
        let used = deviceUsed ? (try? context.device.memoryInfo()).map { $0.total - $0.free } : nil
        return MemoryReport(statistics: context.allocator.statistics, deviceUsedBytes: used)
    }

    /// Megatron's line (`report_memory`): mebibytes with two decimals.
    public func line(rank: Int, iterations: Int) -> String {
        var text = "[Rank \(rank)] (after \(iterations) iterations) memory (MB)"
            + " | allocated: \(Self.mebibytes(statistics.allocatedBytes))"
            + " | max allocated: \(Self.mebibytes(statistics.peakAllocatedBytes))"
            + " | reserved: \(Self.mebibytes(statistics.reservedBytes))"
            + " | max reserved: \(Self.mebibytes(statistics.peakReservedBytes))"
        if let deviceUsedBytes { text += " | total device memory used: \(Self.mebibytes(deviceUsedBytes))" }
        return text
    }

    /// Megatron's TensorBoard tags and values (bytes; a count of live allocations).
    public var scalars: [(String, Double)] {
        [("mem-reserved-bytes", Double(statistics.reservedBytes)),
         ("mem-allocated-bytes", Double(statistics.allocatedBytes)),
         ("mem-max-allocated-bytes", Double(statistics.peakAllocatedBytes)),
         ("mem-allocated-count", Double(statistics.activeAllocations))]
    }

    /// `bytes / 2^20` as Python's `{:.2f}`.
    static func mebibytes(_ bytes: Int) -> String {
        String(format: "%.2f", Double(bytes) / 1_048_576)
    }
}
