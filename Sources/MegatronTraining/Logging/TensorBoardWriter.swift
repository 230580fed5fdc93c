import Foundation
import MegatronCore

/// Writes scalars as TensorBoard event files (`events.out.tfevents.<time>.<host>`): TFRecord framing with
/// masked CRC-32C checksums around hand-encoded `Event` protocol buffers, which TensorBoard reads as is.
///
/// As PyTorch's `SummaryWriter` (`max_queue`, Megatron's `--tensorboard-queue-size`), events wait in memory
/// until `queueSize` of them are pending, two minutes have passed since the last write, or `flush()`.
///
/// ```swift
/// let tb = try TensorBoardWriter(directory: "runs/gpt")
/// tb.scalar("lm loss", 3.14, step: 100)
/// tb.flush()
/// ```
public final class TensorBoardWriter {
    public let url: URL
    public let queueSize: Int
    private let handle: FileHandle
    private var pending = Data()
    private var pendingEvents = 0
    private var lastWrite = Date()

    public init(directory: String, queueSize: Int = 1000) throws {
        self.queueSize = max(1, queueSize)
        let dir = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName
        url = dir.appendingPathComponent("events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host)")
        FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forWritingTo: url)
        var first = Protobuf()
        first.double(1, Date().timeIntervalSince1970)
        first.string(3, "brain.Event:2")
        write(first.bytes)
        drain()
    }

    deinit {
        drain()
        try? handle.close()
    }

    /// Appends one scalar summary at `step`.
    public func scalar(_ tag: String, _ value: Double, step: Int) {
        var summaryValue = Protobuf()
        summaryValue.string(1, tag)
        summaryValue.float(2, Float(value))
        var summary = Protobuf()
        summary.message(1, summaryValue)
        var event = Protobuf()
        event.double(1, Date().timeIntervalSince1970)
        event.int(2, step)
        event.message(5, summary)
        write(event.bytes)
    }

    /// Writes the pending events and waits for them to reach the disk.
    public func flush() {
        drain()
        try? handle.synchronize()
    }

    /// Queues one TFRecord: length, masked CRC of the length, data, masked CRC of the data.
    private func write(_ data: [UInt8]) {
        var record: [UInt8] = []
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        record += length
        record += withUnsafeBytes(of: Self.maskedCRC(length).littleEndian) { Array($0) }
        record += data
        record += withUnsafeBytes(of: Self.maskedCRC(data).littleEndian) { Array($0) }
        pending.append(contentsOf: record)
        pendingEvents += 1
        if pendingEvents >= queueSize || Date().timeIntervalSince(lastWrite) >= 120 { drain() }
    }

    /// Hands the pending events to the file.
    private func drain() {
        if !pending.isEmpty { handle.write(pending) }
        pending.removeAll(keepingCapacity: true)
        pendingEvents = 0
        lastWrite = Date()
    }

    /// TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant.
    static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let crc = bytes.withUnsafeBytes { CRC32C.checksum($0) }
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}

/// The few protocol-buffer wire types an Event needs.
struct Protobuf {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: Int) { varint(UInt64(field << 3 | wireType)) }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
    }

    mutating func int(_ field: Int, _ value: Int) {
        key(field, 0)
        varint(UInt64(bitPattern: Int64(value)))
    }

    mutating func string(_ field: Int, _ value: String) { lengthDelimited(field, Array(value.utf8)) }

    mutating func message(_ field: Int, _ value: Protobuf) { lengthDelimited(field, value.bytes) }

    private mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, 2)
        varint(UInt64(payload.count))
        bytes += payload
    }
}
