/// Where a tensor's storage lives.
public enum Device: Hashable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    public var description: String {
        switch self {
        case .cpu: "cpu"
        case .cuda(let i): "cuda:\(i)"
        }
    }
}

extension Device {
    /// The GPU ordinal of a CUDA device; nil for the CPU.
    public var ordinal: Int? {
        if case .cuda(let i) = self { return i }
        return nil
    }
}
