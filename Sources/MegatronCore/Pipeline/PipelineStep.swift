/// A forward or backward pass of one micro-batch through one model chunk of a pipeline rank.
public struct PipelineWork: Hashable, Sendable {
    public var microBatch: Int
    /// The model chunk (virtual pipeline stage) on this rank; 0 without interleaving.
    public var chunk: Int

    public init(microBatch: Int, chunk: Int) {
        self.microBatch = microBatch
        self.chunk = chunk
    }
}

/// The point-to-point transfers a pipeline rank issues together, as one batch (Megatron's
/// `batch_isend_irecv`), so that the neighbours' matching transfers cannot deadlock against them.
///
/// Sends name the pass whose result they carry; receives are only flags, since what arrives is whatever the
/// neighbour sends in its matching batch.
public struct PipelineExchange: Equatable, Sendable {
    /// The input gradient of this backward, sent to the previous stage.
    public var sendBackward: PipelineWork?
    /// An activation arrives from the previous stage.
    public var receiveForward: Bool
    /// The output activation of this forward, sent to the next stage.
    public var sendForward: PipelineWork?
    /// An output gradient arrives from the next stage.
    public var receiveBackward: Bool

    public init(sendBackward: PipelineWork? = nil, receiveForward: Bool = false, sendForward: PipelineWork? = nil,
                receiveBackward: Bool = false) {
        self.sendBackward = sendBackward
        self.receiveForward = receiveForward
        self.sendForward = sendForward
        self.receiveBackward = receiveBackward
    }

    /// Whether the batch moves nothing (and is therefore not issued).
    public var isEmpty: Bool { sendBackward == nil && !receiveForward && sendForward == nil && !receiveBackward }
}

/// One step of a pipeline rank's schedule, in the order the rank runs them.
public enum PipelineStep: Equatable, Sendable, CustomStringConvertible {
    case forward(PipelineWork)
    case backward(PipelineWork)
    case exchange(PipelineExchange)

    /// `F3.1` (forward of micro-batch 3 on chunk 1), `B3.1`, or `x sB0.1 rF sF2.0 rB`: an exchange lists its
    /// transfers in Megatron's batch order (send to previous, receive from previous, send to next, receive from next).
    public var description: String {
        switch self {
        case .forward(let work): return "F\(work.microBatch).\(work.chunk)"
        case .backward(let work): return "B\(work.microBatch).\(work.chunk)"
        case .exchange(let x):
            var parts = ["x"]
            if let work = x.sendBackward { parts.append("sB\(work.microBatch).\(work.chunk)") }
            if x.receiveForward { parts.append("rF") }
            if let work = x.sendForward { parts.append("sF\(work.microBatch).\(work.chunk)") }
            if x.receiveBackward { parts.append("rB") }
            return parts.joined(separator: " ")
        }
    }
}

extension Array where Element == PipelineStep {
    /// The most micro-batches whose forward has run and whose backward has not, at any point: the activations
    /// the rank keeps alive (1F1B bounds it by the number of stages after this one, plus one).
    public var peakInFlight: Int {
        var live = 0, peak = 0
        for step in self {
            switch step {
            case .forward: live += 1; peak = Swift.max(peak, live)
            case .backward: live -= 1
            case .exchange: break
            }
        }
        return peak
    }
}
