import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A connected TCP socket with whole-buffer reads and writes: the transport of the rendezvous store.
final class Socket {
    let descriptor: Int32
    init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { close(descriptor) }

    /// Connects to `host:port`, retrying until `deadline` (the server may not be listening yet).
    static func connect(host: String, port: Int, deadline: Date) throws -> Socket {
        var lastError = "no attempt"
        repeat {
            do {
                return try connectOnce(host: host, port: port)
            } catch let error as RendezvousError {
                lastError = error.message
            }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        throw RendezvousError("cannot connect to the rendezvous store at \(host):\(port) (is rank 0 running and "
            + "MASTER_ADDR/MASTER_PORT right?): \(lastError)")
    }

    private static func connectOnce(host: String, port: Int) throws -> Socket {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var info: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &info)
        guard status == 0, let address = info else {
            throw RendezvousError("cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(info) }
        // Close-on-exec: a rank or program a launcher starts must not hold the launcher's connection open.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RendezvousError("socket(): \(String(cString: strerror(errno)))") }
        let socket = Socket(descriptor: fd)
        guard Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 else {
            throw RendezvousError("connect(): \(String(cString: strerror(errno)))")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return socket
    }

    func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw RendezvousError("send(): \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    func read(count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var received = 0
        while received < count {
            let n = bytes[received...].withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw RendezvousError(n == 0 ? "the peer closed the connection" : "recv(): \(String(cString: strerror(errno)))")
            }
            received += n
        }
        return bytes
    }

    func writeFrame(_ payload: [UInt8]) throws { try write(UInt32(payload.count).bigEndianBytes + payload) }

    func readFrame() throws -> [UInt8] {
        let length = try read(count: 4).reduce(0) { $0 << 8 | Int($1) }
        return try read(count: length)
    }
}

extension FixedWidthInteger {
    var bigEndianBytes: [UInt8] { withUnsafeBytes(of: bigEndian) { Array($0) } }

    init(bigEndianBytes bytes: [UInt8]) {
        self = bytes.reduce(0) { $0 << 8 | Self(truncatingIfNeeded: $1) }
    }
}

/// A rendezvous failure: connection, timeout or protocol, with the address and what was waited for.
public struct RendezvousError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
