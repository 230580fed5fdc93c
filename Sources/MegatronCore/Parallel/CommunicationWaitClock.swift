import Dispatch
import MegatronCUDA
import MegatronParallel
import MegatronTensor

/// How long a rank's compute stood still waiting for communication it cannot go on without: a pipeline
/// stage's received activations and gradients (its bubble, plus transfer time), an expert-parallel all-to-all.
///
/// On a GPU, `wait()` only orders the compute stream after the transfer, so the host cannot see the stall:
/// two events are recorded on the compute stream, just before and just after it is ordered after the
/// transfer, and the stream stands still between them until the transfer has landed. On the CPU (thread
/// ranks) the wait blocks the host, whose time in it is taken.
///
/// ```swift
/// let clock = CommunicationWaitClock(device: device)
/// try clock.measure { try work.wait() }
/// let seconds = try clock.takeSeconds()   // the stalls since the last take
/// ```
public final class CommunicationWaitClock {
    private let context: CUDAContext?
    private var marks: [(before: CUDAEvent, after: CUDAEvent)] = []
    private var hostSeconds = 0.0

    public init(device: Device) throws {
        context = try device.ordinal.map { try CUDAContext.shared(ordinal: $0) }
    }

    /// Runs `wait` (which orders the compute stream after some communication), timing the stall it causes.
    public func measure(_ wait: () throws -> Void) throws {
        guard let context else {
            let start = DispatchTime.now().uptimeNanoseconds
            try wait()
            hostSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            return
        }
        let before = try CUDAEvent(device: context.device), after = try CUDAEvent(device: context.device)
        try before.record(on: context.stream)
        try wait()
        try after.record(on: context.stream)
        marks.append((before, after))
    }

    /// The stall time measured since the last take, in seconds; on a GPU it waits for the last mark to be reached.
    public func takeSeconds() throws -> Double {
        var seconds = hostSeconds
        try marks.last?.after.synchronize()
        for (before, after) in marks { seconds += try after.elapsedMilliseconds(since: before) / 1000 }
        marks = []
        hostSeconds = 0
        return seconds
    }
}
