import Foundation

/// Reads a pickle (protocols 0-5 as far as checkpoints use them) into `PickleValue`s without executing anything:
/// globals must be on `PickleGlobals`' list, REDUCE / NEWOBJ / BUILD are recorded as `PickleObject`s. Two
/// constructions are read as the data they make: `OrderedDict()` (a dict) and `_codecs.encode(s, 'latin1')`
/// (bytes, protocol 2's spelling).
///
/// ```swift
/// let metadata = try PickleReader.read(Data(contentsOf: dir.appendingPathComponent(".metadata")))
/// ```
public struct PickleReader {
    /// A value under construction: lists, dicts and objects are filled in after they are memoized, so the stack
    /// and the memo share them by reference until `freeze`.
    final class Node {
        enum Content {
            case leaf(PickleValue)
            case tuple([Node])
            case list([Node])
            case dict([(Node, Node)])
            case object(PickleGlobal, arguments: Node, state: Node?, isNewObject: Bool)
            case persistent(Node)
        }
        var content: Content
        init(_ content: Content) { self.content = content }
        static func leaf(_ v: PickleValue) -> Node { Node(.leaf(v)) }
    }

    private let bytes: [UInt8]
    private var position = 0
    private var stack: [Node] = []
    private var marks: [Int] = []
    private var memo: [Int: Node] = [:]

    /// Nesting deeper than this (or a self-referencing container) is refused rather than recursed into.
    static let maxDepth = 512

    /// The value `data` pickles.
    public static func read(_ data: Data) throws -> PickleValue {
        var reader = PickleReader(bytes: [UInt8](data))
        return try reader.run()
    }

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func run() throws -> PickleValue {
        while true {
            let offset = position
            let op = try byte()
            do {
                if try step(op) { break }
            } catch let error as PickleError {
                throw PickleError("opcode 0x\(String(op, radix: 16)) at byte \(offset): \(error.description)")
            }
        }
        guard stack.count == 1 else { throw PickleError("STOP with \(stack.count) values on the stack") }
        var budget = Self.maxValues
        return try Self.freeze(stack[0], depth: 0, budget: &budget)
    }

    /// Executes one opcode on the stack; true at STOP.
    private mutating func step(_ op: UInt8) throws -> Bool {
        switch op {
        case 0x80: _ = try byte()                                             // PROTO
        case 0x95: _ = try take(8)                                            // FRAME
        case 0x2e: return true                                                // STOP
        case 0x28: marks.append(stack.count)                                  // MARK
        case 0x30: _ = try pop()                                              // POP
        case 0x31: _ = try popMark()                                          // POP_MARK
        case 0x32: stack.append(try top())                                    // DUP
        case 0x4e: push(.none)                                                // NONE
        case 0x88: push(.bool(true))                                          // NEWTRUE
        case 0x89: push(.bool(false))                                         // NEWFALSE
        case 0x4b: push(.int(Int(try byte())))                                // BININT1
        case 0x4d: push(.int(Int(try uint(2))))                               // BININT2
        case 0x4a: push(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))    // BININT
        case 0x8a: push(.int(try long(Int(try byte()))))                      // LONG1
        case 0x8b: push(.int(try long(try length(4))))                        // LONG4
        case 0x49, 0x4c: push(try textInt())                                  // INT, LONG
        case 0x47: push(.float(Double(bitPattern: try bigEndian(8))))         // BINFLOAT
        case 0x8c: push(.string(try text(Int(try byte()))))                   // SHORT_BINUNICODE
        case 0x58: push(.string(try text(try length(4))))                     // BINUNICODE
        case 0x8d: push(.string(try text(try length(8))))                     // BINUNICODE8
        case 0x55: push(.string(try latin1(Int(try byte()))))                 // SHORT_BINSTRING
        case 0x54: push(.string(try latin1(try length(4))))                   // BINSTRING
        case 0x43: push(.bytes(try take(Int(try byte()))))                    // SHORT_BINBYTES
        case 0x42: push(.bytes(try take(try length(4))))                      // BINBYTES
        case 0x8e, 0x96: push(.bytes(try take(try length(8))))                // BINBYTES8, BYTEARRAY8
        case 0x29: stack.append(Node(.tuple([])))                             // EMPTY_TUPLE
        case 0x74: stack.append(Node(.tuple(try popMark())))                  // TUPLE
        case 0x85, 0x86, 0x87: try tuple(Int(op) - 0x84)                      // TUPLE1-3
        case 0x5d: stack.append(Node(.list([])))                              // EMPTY_LIST
        case 0x6c: stack.append(Node(.list(try popMark())))                   // LIST
        case 0x61: try append([try pop()])                                    // APPEND
        case 0x65: try append(try popMark())                                  // APPENDS
        case 0x7d: stack.append(Node(.dict([])))                              // EMPTY_DICT
        case 0x64: stack.append(Node(.dict(try pairs(try popMark()))))        // DICT
        case 0x73: try setItems(try pairs([try pop(), try pop()].reversed())) // SETITEM
        case 0x75: try setItems(try pairs(try popMark()))                     // SETITEMS
        case 0x63: try pushGlobal(try line(), try line())                     // GLOBAL
        case 0x93: try stackGlobal()                                          // STACK_GLOBAL
        case 0x52: try reduce(isNewObject: false)                             // REDUCE
        case 0x81: try reduce(isNewObject: true)                              // NEWOBJ
        case 0x62: try build()                                                // BUILD
        case 0x51: stack.append(Node(.persistent(try pop())))                 // BINPERSID
        case 0x71: memo[Int(try byte())] = try top()                          // BINPUT
        case 0x72: memo[Int(try uint(4))] = try top()                         // LONG_BINPUT
        case 0x70: memo[try lineInt()] = try top()                            // PUT
        case 0x94: memo[memo.count] = try top()                               // MEMOIZE
        case 0x68: try get(Int(try byte()))                                   // BINGET
        case 0x6a: try get(Int(try uint(4)))                                  // LONG_BINGET
        case 0x67: try get(try lineInt())                                     // GET
        default: throw PickleError("unsupported opcode (sets, extensions, out-of-band buffers and INST/OBJ are not read)")
        }
        return false
    }

    // MARK: Bytes

    private mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw PickleError("the pickle ends without STOP") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func take(_ n: Int) throws -> [UInt8] {
        guard n >= 0, n <= bytes.count - position else { throw PickleError("a length of \(n) runs past the end of the pickle") }
        defer { position += n }
        return Array(bytes[position..<position + n])
    }

    private mutating func uint(_ n: Int) throws -> UInt64 {
        try take(n).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    private mutating func bigEndian(_ n: Int) throws -> UInt64 { try take(n).reduce(0) { $0 << 8 | UInt64($1) } }

    private mutating func length(_ n: Int) throws -> Int {
        let v = try uint(n)
        guard v <= UInt64(bytes.count) else { throw PickleError("a length of \(v) runs past the end of the pickle") }
        return Int(v)
    }

    /// A little-endian two's complement integer of `n` bytes (LONG1/LONG4); beyond 64 bits is refused.
    private mutating func long(_ n: Int) throws -> Int {
        guard n <= 8 else { throw PickleError("an integer of \(n) bytes is beyond 64 bits") }
        let raw = try take(n)
        guard n > 0 else { return 0 }
        var v = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if n < 8, raw[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * n) }
        return Int(Int64(bitPattern: v))
    }

    private mutating func text(_ n: Int) throws -> String {
        guard let s = String(bytes: try take(n), encoding: .utf8) else { throw PickleError("a string is not UTF-8") }
        return s
    }

    private mutating func latin1(_ n: Int) throws -> String { String(decoding: try take(n).map { UInt16($0) }, as: UTF16.self) }

    private mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0a) else { throw PickleError("a text argument has no newline") }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    private mutating func lineInt() throws -> Int {
        let text = try line()
        guard let v = Int(text) else { throw PickleError("'\(text)' is not an integer") }
        return v
    }

    private mutating func textInt() throws -> PickleValue {
        var text = try line()
        if text == "01" { return .bool(true) }
        if text == "00" { return .bool(false) }
        if text.hasSuffix("L") { text.removeLast() }
        guard let v = Int(text) else { throw PickleError("'\(text)' is not a 64-bit integer") }
        return .int(v)
    }

    // MARK: Stack

    private mutating func push(_ v: PickleValue) { stack.append(.leaf(v)) }

    private mutating func pop() throws -> Node {
        guard stack.count > (marks.last ?? 0) else { throw PickleError("pop from an empty stack") }
        return stack.removeLast()
    }

    private func top() throws -> Node {
        guard let last = stack.last else { throw PickleError("the stack is empty") }
        return last
    }

    private mutating func popMark() throws -> [Node] {
        guard let mark = marks.popLast() else { throw PickleError("no MARK to pop to") }
        defer { stack.removeSubrange(mark...) }
        return Array(stack[mark...])
    }

    private mutating func tuple(_ n: Int) throws {
        guard stack.count - (marks.last ?? 0) >= n else { throw PickleError("TUPLE\(n) with fewer values on the stack") }
        let items = Array(stack.suffix(n))
        stack.removeLast(n)
        stack.append(Node(.tuple(items)))
    }

    private func pairs(_ items: [Node]) throws -> [(Node, Node)] {
        guard items.count % 2 == 0 else { throw PickleError("a dict is given an odd number of keys and values") }
        return stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
    }

    private mutating func append(_ items: [Node]) throws {
        let target = try top()
        guard case .list(let existing) = target.content else { throw PickleError("APPEND to something that is not a list") }
        target.content = .list(existing + items)
    }

    private mutating func setItems(_ items: [(Node, Node)]) throws {
        let target = try top()
        guard case .dict(let existing) = target.content else { throw PickleError("SETITEM on something that is not a dict") }
        target.content = .dict(existing + items)
    }

    private mutating func get(_ index: Int) throws {
        guard let node = memo[index] else { throw PickleError("memo entry \(index) was never stored") }
        stack.append(node)
    }

    private mutating func pushGlobal(_ module: String, _ name: String) throws {
        push(.global(try PickleGlobals.require(PickleGlobal(module, name))))
    }

    private mutating func stackGlobal() throws {
        let (name, module) = (try pop(), try pop())
        guard case .leaf(.string(let n)) = name.content, case .leaf(.string(let m)) = module.content else {
            throw PickleError("STACK_GLOBAL without two strings")
        }
        try pushGlobal(m, n)
    }

    private mutating func reduce(isNewObject: Bool) throws {
        let (arguments, callable) = (try pop(), try pop())
        guard case .leaf(.global(let global)) = callable.content else { throw PickleError("REDUCE of something that is not a global") }
        guard case .tuple(let args) = arguments.content else { throw PickleError("REDUCE of \(global) without an argument tuple") }
        if global == PickleGlobals.orderedDict, args.isEmpty {
            stack.append(Node(.dict([])))
        } else if global == PickleGlobals.codecsEncode, args.count == 2, case .leaf(.string(let text)) = args[0].content {
            push(.bytes(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }))
        } else {
            stack.append(Node(.object(global, arguments: arguments, state: nil, isNewObject: isNewObject)))
        }
    }

    private mutating func build() throws {
        let state = try pop()
        let target = try top()
        switch target.content {
        case .object(let g, let arguments, nil, let isNew): target.content = .object(g, arguments: arguments, state: state, isNewObject: isNew)
        // OrderedDict attributes (a module state dict's `_metadata`) are not needed to read it.
        case .dict: break
        default: throw PickleError("BUILD on something that is not an object")
        }
    }

    // MARK: Result

    /// Memo references can share one value many times over; expanding more values than this is refused.
    static let maxValues = 50_000_000

    static func freeze(_ node: Node, depth: Int, budget: inout Int) throws -> PickleValue {
        guard depth < maxDepth else { throw PickleError("nesting deeper than \(maxDepth) levels (or a container that holds itself)") }
        budget -= 1
        guard budget >= 0 else { throw PickleError("more than \(maxValues) values once memo references are expanded") }
        func f(_ n: Node) throws -> PickleValue { try freeze(n, depth: depth + 1, budget: &budget) }
        switch node.content {
        case .leaf(let v): return v
        case .tuple(let items): return .tuple(try items.map(f))
        case .list(let items): return .list(try items.map(f))
        case .dict(let pairs): return .dict(try pairs.map { PickleValue.Pair(try f($0.0), try f($0.1)) })
        case .persistent(let id): return .persistent(try f(id))
        case .object(let g, let arguments, let state, let isNew):
            return .object(PickleObject(g, arguments: try f(arguments).elements ?? [], state: try state.map(f), isNewObject: isNew))
        }
    }
}
