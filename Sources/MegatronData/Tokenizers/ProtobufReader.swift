/// The fields of one protocol-buffer message in wire format, read in order: what a SentencePiece `.model` file
/// is. Only what proto2 messages without groups use: varints, fixed 32/64-bit values and length-delimited runs.
/// Every read is bounds-checked, so truncated or corrupt bytes throw `ProtobufError` rather than trap.
///
/// ```swift
/// var reader = ProtobufReader(bytes)
/// while let field = try reader.next() {
///     if field.number == 1, case .bytes(let range) = field.value { ... }
/// }
/// ```
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed32(UInt32)
        case fixed64(UInt64)
        /// A length-delimited field: a string, bytes or an embedded message, as a range of the reader's bytes.
        case bytes(Range<Int>)
    }

    struct Field {
        let number: Int
        let value: Value
    }

    let bytes: [UInt8]
    private var position: Int
    private let end: Int

    init(_ bytes: [UInt8]) { self.init(bytes, 0..<bytes.count) }

    /// A reader of the message held in `range` of `bytes`.
    init(_ bytes: [UInt8], _ range: Range<Int>) {
        self.bytes = bytes
        position = range.lowerBound
        end = range.upperBound
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws -> Field? {
        guard position < end else { return nil }
        let start = position
        let key = try varint()
        let number = Int(key >> 3)
        guard number > 0 && key >> 3 <= UInt64(Int32.max) else {
            throw ProtobufError("field number \(key >> 3) at byte \(start)")
        }
        switch key & 7 {
        case 0: return Field(number: number, value: .varint(try varint()))
        case 1: return Field(number: number, value: .fixed64(try fixed(8)))
        case 2:
            let length = try varint()
            guard length <= UInt64(end - position) else {
                throw ProtobufError("field \(number) at byte \(start) is \(length) bytes long, past the end at byte \(end)")
            }
            let range = position..<(position + Int(length))
            position = range.upperBound
            return Field(number: number, value: .bytes(range))
        case 5: return Field(number: number, value: .fixed32(UInt32(try fixed(4))))
        default: throw ProtobufError("field \(number) at byte \(start) has wire type \(key & 7), which no SentencePiece field has")
        }
    }

    private mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard position < end else { throw ProtobufError("truncated varint at byte \(position)") }
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte < 0x80 { return value }
        }
        throw ProtobufError("varint longer than 10 bytes at byte \(position)")
    }

    private mutating func fixed(_ width: Int) throws -> UInt64 {
        guard end - position >= width else { throw ProtobufError("truncated \(width * 8)-bit value at byte \(position)") }
        var value: UInt64 = 0
        for k in 0..<width { value |= UInt64(bytes[position + k]) << UInt64(8 * k) }
        position += width
        return value
    }
}

/// Malformed protocol-buffer bytes; the description says where.
struct ProtobufError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension ProtobufReader.Field {
    /// The value as a varint (`bool`, `int32`, enum), or an error naming `what`.
    func varint(_ what: String) throws -> UInt64 {
        guard case .varint(let v) = value else { throw ProtobufError("\(what) (field \(number)) is not a varint") }
        return v
    }

    /// The value as a `float`, or an error naming `what`.
    func float(_ what: String) throws -> Float {
        guard case .fixed32(let v) = value else { throw ProtobufError("\(what) (field \(number)) is not a 32-bit float") }
        return Float(bitPattern: v)
    }

    /// The range of a length-delimited value, or an error naming `what`.
    func bytes(_ what: String) throws -> Range<Int> {
        guard case .bytes(let range) = value else { throw ProtobufError("\(what) (field \(number)) is not length-delimited") }
        return range
    }

    /// An `int32` varint: negative values are sign-extended to 64 bits on the wire.
    func int32(_ what: String) throws -> Int {
        Int(Int32(truncatingIfNeeded: Int64(bitPattern: try varint(what))))
    }
}
