import Synchronization

/// How many copies between host memory and one GPU its tensors have made: `Tensor.to(_:)` in either
/// direction and `startCopyToHost`. Ops never copy on their own (a kernel that does not apply has a
/// general path on the device), so in a training step the only copies are the ones the caller asks
/// for: the batch going up, the loss and the gradient norm coming down. Tests read the counts around
/// a step to hold that.
///
///     let copies = try CUDAContext.shared(ordinal: 0).hostCopies
///     let before = copies.count
///     let loss = model.loss(tokens: tokens, labels: labels).mean()
///     XCTAssertEqual((copies.count - before).deviceToHost, 0)
public final class HostCopyCounter: Sendable {
    private let toHost = Atomic<Int>(0)
    private let toDevice = Atomic<Int>(0)

    public init() {}

    /// The copies so far.
    public var count: HostCopyCount {
        HostCopyCount(deviceToHost: toHost.load(ordering: .relaxed), hostToDevice: toDevice.load(ordering: .relaxed))
    }

    func countDeviceToHost() { toHost.add(1, ordering: .relaxed) }

    func countHostToDevice() { toDevice.add(1, ordering: .relaxed) }
}

/// Copies counted by a `HostCopyCounter`; the difference of two counts is the copies between them.
public struct HostCopyCount: Equatable, Sendable, CustomStringConvertible {
    public var deviceToHost: Int
    public var hostToDevice: Int

    public init(deviceToHost: Int, hostToDevice: Int) {
        (self.deviceToHost, self.hostToDevice) = (deviceToHost, hostToDevice)
    }

    public static func - (later: HostCopyCount, earlier: HostCopyCount) -> HostCopyCount {
        HostCopyCount(deviceToHost: later.deviceToHost - earlier.deviceToHost, hostToDevice: later.hostToDevice - earlier.hostToDevice)
    }

    public var description: String { "\(deviceToHost) device-to-host, \(hostToDevice) host-to-device" }
}
