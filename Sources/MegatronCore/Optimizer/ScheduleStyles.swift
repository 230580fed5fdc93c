import Foundation

/// `--lr-decay-style`: how the learning rate falls after warmup.
public enum LRDecayStyle: String, Codable, CaseIterable, Sendable {
    case constant, linear, cosine
    case inverseSquareRoot = "inverse-square-root"
    /// Warmup-stable-decay: constant, then a final anneal of `--lr-wsd-decay-iters/-samples`.
    case wsd = "WSD"
}

/// `--lr-wsd-decay-style`: the shape of WSD's final anneal.
public enum WSDDecayStyle: String, Codable, CaseIterable, Sendable {
    case exponential, linear, cosine
    case minusSqrt = "minus_sqrt"
}

/// `--weight-decay-incr-style`: how weight decay moves from `--start-weight-decay` to `--end-weight-decay`.
public enum WeightDecayIncrementStyle: String, Codable, CaseIterable, Sendable {
    case constant, linear, cosine
}

extension LRDecayStyle {
    /// The decay coefficient in [0, 1] (1 at the start of decay, 0 at its end) for `ratio` in [0, 1];
    /// WSD needs `steps` to place its anneal. Inverse-square-root and constant do not use it.
    func coefficient(ratio: Double, numSteps: Int, decaySteps: Int, wsd: (steps: Int, style: WSDDecayStyle)) -> Double {
        switch self {
        case .constant, .inverseSquareRoot: return 1
        case .linear: return 1 - ratio
        case .cosine: return 0.5 * (cos(Double.pi * ratio) + 1)
        case .wsd:
            let annealStart = decaySteps - wsd.steps
            if numSteps <= annealStart { return 1 }
            let r = Double(numSteps - annealStart) / Double(wsd.steps)
            switch wsd.style {
            case .linear: return 1 - r
            case .cosine: return 0.5 * (cos(Double.pi * r) + 1)
            case .exponential: return 2 * pow(0.5, r) - 1
            case .minusSqrt: return 1 - r.squareRoot()
            }
        }
    }
}
