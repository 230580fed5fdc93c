import MegatronCUDA
import MegatronTensor

/// GPU memory of the caching allocator, as Megatron reports it: the `report_memory` line printed once
/// after the first logged iterations, and the `mem-*` TensorBoard scalars of `--log-memory-to-tensorboard`.
///
/// Only GPU memory is tracked (the caching allocator counts it); on the CPU there is no report.
///
/// ```swift
/// if let memory = MemoryReport.current(on: device) {
///     print(memory.line(rank: 0, iterations: 10))
///     // [Rank 0] (after 10 iterations) memory (MB) | allocated: 1523.5 | max allocated: 2807.25 | ...
/// }
/// ```
public struct MemoryReport: Equatable {
    public var statistics: AllocatorStatistics

    public init(statistics: AllocatorStatistics) { self.statistics = statistics }

    /// The allocator's numbers for `device` now; nil on the CPU, where memory is not tracked.
    public static func current(on device: Device) -> MemoryReport? {
        guard let ordinal = device.ordinal, let context = try? CUDAContext.shared(ordinal: ordinal) else { return nil }
        return MemoryReport(statistics: context.allocator.statistics)
    }

    /// Megatron's line (`training/utils.py: report_memory`): mebibytes printed as Python prints a float.
    public func line(rank: Int, iterations: Int) -> String {
        "[Rank \(rank)] (after \(iterations) iterations) memory (MB)"
            + " | allocated: \(Self.mebibytes(statistics.allocatedBytes))"
            + " | max allocated: \(Self.mebibytes(statistics.peakAllocatedBytes))"
            + " | reserved: \(Self.mebibytes(statistics.reservedBytes))"
            + " | max reserved: \(Self.mebibytes(statistics.peakReservedBytes))"
    }

    /// Megatron's TensorBoard tags and values (bytes; a count of live allocations).
    public var scalars: [(String, Double)] {
        [("mem-reserved-bytes", Double(statistics.reservedBytes)),
         ("mem-allocated-bytes", Double(statistics.allocatedBytes)),
         ("mem-max-allocated-bytes", Double(statistics.peakAllocatedBytes)),
         ("mem-allocated-count", Double(statistics.activeAllocations))]
    }

    /// `bytes / 2^20` in Python's `str(float)` form: Swift's `description` is also the shortest text that
    /// reads back as the same double, with a `.0` on whole numbers.
    static func mebibytes(_ bytes: Int) -> String {
        (Double(bytes) / 1_048_576).description
    }
}
