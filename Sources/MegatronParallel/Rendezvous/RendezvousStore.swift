import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP key-value store for the ranks of one job to meet (torch's TCPStore): rank 0 serves it at
/// MASTER_ADDR:MASTER_PORT, every rank (rank 0 included) is a client. Used to hand rank 0's NCCL unique id
/// to the others.
///
/// ```swift
/// let store = try RendezvousStore(host: env.masterAddress, port: env.masterPort, isServer: env.rank == 0)
/// if env.rank == 0 { try store.set("nccl-id", id.bytes) }
/// let bytes = try store.get("nccl-id", timeout: 60)     // waits until rank 0 has set it
/// ```
public final class RendezvousStore {
    public let host: String
    public let port: Int
    private let server: RendezvousServer?
    private let socket: Socket
    private let lock = NSLock()

    /// `isServer` starts the server on `port` (0 picks a free one: read `port` back). Clients retry connecting
    /// for `connectTimeout` seconds.
    public init(host: String, port: Int, isServer: Bool, connectTimeout: TimeInterval = 300) throws {
        server = isServer ? try RendezvousServer(port: port) : nil
        self.host = host
        self.port = server?.port ?? port
        socket = try Socket.connect(host: host, port: self.port, deadline: Date(timeIntervalSinceNow: connectTimeout))
    }

    deinit { server?.stop() }

    public func set(_ key: String, _ value: [UInt8]) throws {
        _ = try request(.set, key, value, waitingFor: "set '\(key)'")
    }

    /// The value of `key`, waiting up to `timeout` seconds for some rank to set it.
    public func get(_ key: String, timeout: TimeInterval) throws -> [UInt8] {
        let milliseconds = UInt64(max(0, timeout * 1000))
        return try request(.get, key, milliseconds.bigEndianBytes,
                           waitingFor: "key '\(key)' (waited \(timeout) s)")
    }

    /// Adds `delta` to the integer counter `key` (0 when absent) and returns the new value.
    public func add(_ key: String, _ delta: Int) throws -> Int {
        Int(Int64(bigEndianBytes: try request(.add, key, Int64(delta).bigEndianBytes, waitingFor: "add '\(key)'")))
    }

    /// The value of `key` now, or nil when no rank has set it (no waiting).
    public func value(of key: String) throws -> [UInt8]? {
        try exchange(.get, key, UInt64(0).bigEndianBytes, waitingFor: "key '\(key)'")
    }

    /// Sets `key` to `value` unless some rank set it first, and returns the value it holds now: the first
    /// writer wins.
    public func setIfAbsent(_ key: String, _ value: [UInt8]) throws -> [UInt8] {
        try request(.setIfAbsent, key, value, waitingFor: "set '\(key)' if absent")
    }

    /// Makes the server set `key` to `value` (unless `key` is set by then) when this client's connection ends
    /// before `clearOnDisconnect(key)`: a process that dies, or whose host does, leaves a mark the others can
    /// read, as an ephemeral node of ZooKeeper does.
    public func setOnDisconnect(_ key: String, _ value: [UInt8]) throws {
        _ = try request(.setOnDisconnect, key, value, waitingFor: "set '\(key)' on disconnect")
    }

    /// Withdraws `setOnDisconnect(key, ...)`: ending the connection now leaves `key` as it is.
    public func clearOnDisconnect(_ key: String) throws {
        _ = try request(.clearOnDisconnect, key, [], waitingFor: "clear '\(key)' on disconnect")
    }

    private func request(_ op: RendezvousServer.Operation, _ key: String, _ value: [UInt8],
                         waitingFor: String) throws -> [UInt8] {
        guard let reply = try exchange(op, key, value, waitingFor: waitingFor) else {
            throw RendezvousError("rendezvous store at \(host):\(port): timed out waiting for \(waitingFor)")
        }
        return reply
    }

    /// Sends one request and returns the reply's value, or nil when the server answered "timed out".
    private func exchange(_ op: RendezvousServer.Operation, _ key: String, _ value: [UInt8],
                          waitingFor: String) throws -> [UInt8]? {
        try lock.withLock {
            let reply: [UInt8]
            do {
                try socket.writeFrame([op.rawValue] + UInt32(key.utf8.count).bigEndianBytes + Array(key.utf8) + value)
                reply = try socket.readFrame()
            } catch let error as RendezvousError {
                throw RendezvousError("rendezvous store at \(host):\(port): \(waitingFor): \(error.message)")
            }
            return reply.first == 0 ? Array(reply.dropFirst()) : nil
        }
    }
}

/// The server side of `RendezvousStore`: a thread accepting connections and one thread per connection.
/// Frames are a 4-byte big-endian length and a payload: requests [op][key length: 4][key][argument],
/// replies [status (0 ok, 1 timeout)][value].
final class RendezvousServer: @unchecked Sendable {
    enum Operation: UInt8 { case set = 1, get = 2, add = 3, setOnDisconnect = 4, clearOnDisconnect = 5, setIfAbsent = 6 }

    let port: Int
    private let listener: Int32
    private let condition = NSCondition()
    private var values: [String: [UInt8]] = [:]
    private var stopped = false

    init(port: Int) throws {
        // Close-on-exec: a rank or program a launcher starts must not hold the launcher's sockets open.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RendezvousError("socket(): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = INADDR_ANY
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RendezvousError("cannot serve the rendezvous store on port \(port): \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "rendezvous server"
        thread.start()
    }

    func stop() {
        condition.withLock {
            stopped = true
            condition.broadcast()
        }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let connection = Socket(descriptor: fd)
            Thread { [self] in serve(connection) }.start()
        }
    }

    private func serve(_ connection: Socket) {
        // What this connection asked to be set when it ends (setOnDisconnect), applied however it ends.
        var onDisconnect: [String: [UInt8]] = [:]
        defer {
            condition.withLock {
                for (key, value) in onDisconnect where values[key] == nil { values[key] = value }
                condition.broadcast()
            }
        }
        while let request = try? connection.readFrame(), request.count >= 5,
              let op = Operation(rawValue: request[0]) {
            let keyLength = Int(UInt32(bigEndianBytes: Array(request[1..<5])))
            guard request.count >= 5 + keyLength else { return }
            let key = String(decoding: request[5..<(5 + keyLength)], as: UTF8.self)
            let argument = Array(request[(5 + keyLength)...])
            let reply = handle(op, key, argument, onDisconnect: &onDisconnect)
            guard (try? connection.writeFrame(reply)) != nil else { return }
        }
    }

    private func handle(_ op: Operation, _ key: String, _ argument: [UInt8],
                        onDisconnect: inout [String: [UInt8]]) -> [UInt8] {
        condition.lock()
        defer { condition.unlock() }
        switch op {
        case .set:
            values[key] = argument
            condition.broadcast()
            return [0]
        case .add:
            let current = values[key].map { Int64(bigEndianBytes: $0) } ?? 0
            let updated = current + Int64(bigEndianBytes: argument)
            values[key] = updated.bigEndianBytes
            condition.broadcast()
            return [0] + updated.bigEndianBytes
        case .get:
            let deadline = Date(timeIntervalSinceNow: Double(UInt64(bigEndianBytes: argument)) / 1000)
            while values[key] == nil && !stopped {
                if !condition.wait(until: deadline) && values[key] == nil { return [1] }
            }
            return values[key].map { [0] + $0 } ?? [1]
        case .setIfAbsent:
            if values[key] == nil {
                values[key] = argument
                condition.broadcast()
            }
            return [0] + values[key]!
        case .setOnDisconnect:
            onDisconnect[key] = argument
            return [0]
        case .clearOnDisconnect:
            onDisconnect[key] = nil
            return [0]
        }
    }
}
