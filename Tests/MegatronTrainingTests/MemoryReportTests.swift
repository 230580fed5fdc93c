import Foundation
import XCTest
import MegatronCUDA
import MegatronTensor
@testable import MegatronTraining
import MegatronTestSupport

final class MemoryReportTests: XCTestCase {
    /// Megatron's `report_memory` values are `bytes / 2**20` printed with `{:.2f}`:
    /// 123456512 B -> 117.74, 2 MiB -> 2.00, 0 -> 0.00, 512 B -> 0.00; `--log-device-memory-used` appends the
    /// device's used memory.
    func testLineMatchesMegatronsReportMemory() {
        var stats = AllocatorStatistics()
        stats.allocatedBytes = 123_456_512
        stats.peakAllocatedBytes = 2 << 20
        stats.reservedBytes = 0
        stats.peakReservedBytes = 512
        stats.activeAllocations = 7
        let report = MemoryReport(statistics: stats)
        XCTAssertEqual(report.line(rank: 0, iterations: 10),
                       "[Rank 0] (after 10 iterations) memory (MB) | allocated: 117.74 | "
                       + "max allocated: 2.00 | reserved: 0.00 | max reserved: 0.00")
        XCTAssertEqual(MemoryReport(statistics: stats, deviceUsedBytes: 3 << 29).line(rank: 3, iterations: 1),
                       "[Rank 3] (after 1 iterations) memory (MB) | allocated: 117.74 | "
                       + "max allocated: 2.00 | reserved: 0.00 | max reserved: 0.00 | total device memory used: 1536.00")
        let scalars = Dictionary(uniqueKeysWithValues: report.scalars)
        XCTAssertEqual(scalars, ["mem-reserved-bytes": 0, "mem-allocated-bytes": 123_456_512,
                                 "mem-max-allocated-bytes": 2_097_152, "mem-allocated-count": 7])
    }

    /// The line parses with the pattern Megatron's log readers use for it.
    func testLineParsesWithMegatronsPattern() throws {
        var stats = AllocatorStatistics()
        (stats.allocatedBytes, stats.peakAllocatedBytes, stats.reservedBytes, stats.peakReservedBytes) =
            (3 << 30, (3 << 30) + 1536, 4 << 30, 5 << 30)
        let line = MemoryReport(statistics: stats).line(rank: 0, iterations: 100)
        let pattern = try NSRegularExpression(pattern:
            #"^\[Rank (\d+)\] \(after (\d+) iterations\) memory \(MB\) \| allocated: ([\d.]+) \| max allocated: ([\d.]+) \| reserved: ([\d.]+) \| max reserved: ([\d.]+)$"#)
        let match = try XCTUnwrap(pattern.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)))
        let fields = (1...6).map { String(line[Range(match.range(at: $0), in: line)!]) }
        XCTAssertEqual(fields, ["0", "100", "3072.00", "3072.00", "4096.00", "5120.00"])
    }

    func testCPUMemoryIsNotReported() {
        XCTAssertNil(MemoryReport.current(on: .cpu))
    }

    /// On the CPU the log has no memory line and the metrics no memory tags: nothing counts CPU allocations.
    func testCPURunLogsNoMemory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mem-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (lines, metrics) = try train(device: "cpu", metricsDirectory: dir)
        XCTAssertFalse(lines.contains { $0.contains("memory (MB)") }, lines.joined(separator: "\n"))
        XCTAssertEqual(metrics.filter { $0["learning-rate"] != nil }.count, 3, "one record per iteration")
        XCTAssertFalse(metrics.contains { $0.keys.contains { $0.hasPrefix("mem-") } })
    }

    /// On a GPU: as Megatron, a memory line right after the first log line and after the next one (with the
    /// optimizer state), with the allocator's numbers (model, gradients and Adam state are allocated, peaks at
    /// least the current values), and with `--log-memory-to-tensorboard` `mem-*` metrics on every iteration.
    func testGPURunReportsAllocatorMemoryAfterTheFirstTwoLogLines() throws {
        try requireGPU("GPU memory report test")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mem-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (lines, metrics) = try train(device: "cuda", metricsDirectory: dir)
        let memoryLines = lines.enumerated().filter { $0.element.contains("memory (MB)") }
        XCTAssertEqual(memoryLines.count, 2, lines.joined(separator: "\n"))
        XCTAssertTrue(memoryLines.last?.element.hasPrefix("[Rank 0] (after 2 iterations) memory (MB) | allocated: ") == true)
        let (index, line) = try XCTUnwrap(memoryLines.first)
        XCTAssertTrue(lines[index - 1].contains("iteration        1/"), "memory follows the first log line")
        XCTAssertTrue(line.hasPrefix("[Rank 0] (after 1 iterations) memory (MB) | allocated: "), line)
        let values = line.split(separator: "|").dropFirst().map { Double($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces))! }
        XCTAssertEqual(values.count, 4)
        XCTAssertGreaterThan(values[0], 0)
        XCTAssertGreaterThanOrEqual(values[1], values[0])
        XCTAssertGreaterThanOrEqual(values[2], values[0])
        XCTAssertGreaterThanOrEqual(values[3], values[2])
        XCTAssertEqual(metrics.count { $0["mem-allocated-bytes"] != nil }, 3)
        for record in metrics where record["mem-allocated-bytes"] != nil {
            XCTAssertGreaterThan(record["mem-allocated-bytes"]!, 0)
            XCTAssertGreaterThanOrEqual(record["mem-max-allocated-bytes"]!, record["mem-allocated-bytes"]!)
            XCTAssertGreaterThanOrEqual(record["mem-reserved-bytes"]!, record["mem-allocated-bytes"]!)
            XCTAssertGreaterThan(record["mem-allocated-count"]!, 0)
        }
    }

    /// A 3-iteration run's log lines and metrics.jsonl records.
    private func train(device: String, metricsDirectory dir: URL) throws -> ([String], [[String: Double]]) {
        let args = try MegatronArgumentParser.parse(
            ("--num-layers 1 --hidden-size 16 --num-attention-heads 2 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 --train-iters 3 "
             + "--lr 1e-3 --log-interval 2 --eval-iters 1 --device \(device) --tensorboard-dir \(dir.path) --log-memory-to-tensorboard")
                .split(separator: " ").map(String.init))
        var lines: [String] = []
        _ = try Pretrainer(arguments: args) { lines.append($0) }.run()
        let text = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let records = try text.split(separator: "\n").map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]).compactMapValues { $0 as? Double }
        }
        return (lines, records)
    }
}
