import MegatronAutograd
import MegatronTensor

/// A building block with parameters and children, named as Megatron names them.
///
/// Subclasses list their own parameters and children (in a stable order) by overriding `parameters` and
/// `children`; names then compose into paths such as `decoder.layers.0.mlp.linear_fc1.weight`.
///
/// ```swift
/// let mlp = Linear(inFeatures: 64, outFeatures: 256, generator: PhiloxGenerator(seed: 1))
/// for (name, p) in mlp.namedParameters() { print(name, p.shape) }   // weight [256, 64], bias [256]
/// ```
open class Module {
    /// Whether dropout and similar train-only behaviour is on; set with `train()` / `eval()`.
    public private(set) var isTraining = true

    /// Runs as this module's forward begins, where its model calls `willForward` (at the forward stages a
    /// model names, e.g. `GPTModel.forwardStages`). `DistributedDataParallel` sets it with
    /// `overlapParamGather` to wait for this module's parameters' all-gather there (Megatron's forward pre-hook).
    public var forwardPreHook: ((Module) -> Void)?

    public init() {}

    /// Runs `forwardPreHook`; a model calls it on each of its forward stages before that stage's forward.
    public func willForward() { forwardPreHook?(self) }

    /// This module's own parameters, by local name.
    open var parameters: [(String, Tensor)] { [] }

    /// This module's direct children, by local name; parameterless ones (dropout) too, so `train` / `eval` reach them.
    open var children: [(String, Module)] { [] }

    /// Every parameter below this module with its dotted path, depth first in declaration order.
    public func namedParameters(prefix: String = "") -> [(String, Tensor)] {
        parameters.map { (prefix + $0.0, $0.1) }
            + children.flatMap { $0.1.namedParameters(prefix: prefix + $0.0 + ".") }
    }

    /// Switches this module and all below it to training (`true`) or evaluation mode.
    public func train(_ on: Bool = true) {
        isTraining = on
        for (_, child) in children { child.train(on) }
    }

    public func eval() { train(false) }

    /// The parameters by path; the tensors share storage with the module.
    public func stateDict() -> [String: Tensor] {
        Dictionary(namedParameters(), uniquingKeysWith: { first, _ in first })
    }

    /// Copies `state` into the parameters. Every parameter must be present with its shape and dtype;
    /// with `strict`, no extra keys may be present.
    public func loadStateDict(_ state: [String: Tensor], strict: Bool = true) throws {
        let own = namedParameters()
        for (name, param) in own {
            guard let value = state[name] else { throw StateDictError.missingKey(name) }
            guard value.shape == param.shape else {
                throw StateDictError.shapeMismatch(key: name, expected: param.shape, found: value.shape)
            }
            guard value.dtype == param.dtype else {
                throw StateDictError.dtypeMismatch(key: name, expected: param.dtype, found: value.dtype)
            }
        }
        if strict {
            let known = Set(own.map(\.0))
            if let extra = state.keys.sorted().first(where: { !known.contains($0) }) {
                throw StateDictError.unexpectedKey(extra)
            }
        }
        withoutGrad { for (name, param) in own { Ops.copy(state[name]!, into: param) } }
    }
}

/// Why a state dict did not load.
public enum StateDictError: Error, CustomStringConvertible, Equatable {
    case missingKey(String)
    case unexpectedKey(String)
    case shapeMismatch(key: String, expected: [Int], found: [Int])
    case dtypeMismatch(key: String, expected: DType, found: DType)

    public var description: String {
        switch self {
        case .missingKey(let k): "state dict has no entry for parameter '\(k)'"
        case .unexpectedKey(let k): "state dict has an entry '\(k)' that the model does not have"
        case .shapeMismatch(let k, let e, let f): "parameter '\(k)' has shape \(e) but the state dict holds \(f)"
        case .dtypeMismatch(let k, let e, let f): "parameter '\(k)' is \(e) but the state dict holds \(f)"
        }
    }
}

/// A fresh leaf tensor that requires grad: a trainable parameter, on the device of the enclosing `onDevice`.
public func parameter(_ t: Tensor) -> Tensor {
    var p = t.contiguous().detached().to(DevicePlacement.current)
    p.requiresGrad = true
    return p
}
