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

    /// Hooks run as this module's forward begins, in registration order (`registerForwardPreHook`).
    private var forwardPreHooks: [(handle: ForwardHookHandle, hook: (Module) -> Void)] = []
    /// Hooks run as this module's forward ends, in registration order (`registerForwardHook`).
    private var forwardPostHooks: [(handle: ForwardHookHandle, hook: (Module) -> Void)] = []
    private var nextHookID = 0
    /// The attributes of this module's own parameters, by local name; absent: the defaults.
    private var parameterAttributes: [String: ParameterAttributes] = [:]

    public init() {}

    /// Runs `body`, this module's forward, between its pre- and post-forward hooks. Every forward entry point
    /// of a module (`callAsFunction`, a norm's `addNorm`, ...) runs its body through here, as PyTorch's
    /// `Module.__call__` does, so hooks registered on a module see each of its forwards, the replay of a
    /// recomputed segment included. A module whose parent computes with its weights directly (the MLP's fused
    /// GeLU path) runs no forward of its own: register on the parent.
    @inline(__always)
    public func runForward<Output>(_ body: () throws -> Output) rethrows -> Output {
        for (_, hook) in forwardPreHooks { hook(self) }
        let output = try body()
        for (_, hook) in forwardPostHooks { hook(self) }
        return output
    }

    /// Registers `hook` to run as each forward of this module begins (Megatron's forward pre-hooks, by which
    /// `DistributedDataParallel` waits for a module's parameter all-gathers); remove it with `removeHook`.
    ///
    /// ```swift
    /// let handle = layer.registerForwardPreHook { module in print("entering", module) }
    /// layer.removeHook(handle)
    /// ```
    @discardableResult
    public func registerForwardPreHook(_ hook: @escaping (Module) -> Void) -> ForwardHookHandle {
        let handle = makeHookHandle()
        forwardPreHooks.append((handle, hook))
        return handle
    }

    /// Registers `hook` to run as each forward of this module ends; remove it with `removeHook`.
    @discardableResult
    public func registerForwardHook(_ hook: @escaping (Module) -> Void) -> ForwardHookHandle {
        let handle = makeHookHandle()
        forwardPostHooks.append((handle, hook))
        return handle
    }

    /// Removes the hook `handle` names (from this module's registrations); a removed handle is ignored.
    public func removeHook(_ handle: ForwardHookHandle) {
        forwardPreHooks.removeAll { $0.handle == handle }
        forwardPostHooks.removeAll { $0.handle == handle }
    }

    /// How many forward hooks (pre and post) this module holds.
    public var forwardHookCount: Int { forwardPreHooks.count + forwardPostHooks.count }

    private func makeHookHandle() -> ForwardHookHandle {
        defer { nextHookID += 1 }
        return ForwardHookHandle(id: nextHookID)
    }

    /// The attributes of this module's own parameter `name` (`ParameterAttributes`).
    public func attributes(ofParameter name: String) -> ParameterAttributes { parameterAttributes[name] ?? ParameterAttributes() }

    /// Changes the attributes of this module's own parameter `name`; the module that creates the parameter
    /// calls it where it creates it (or its parent, where it creates the module: a norm's use decides whether
    /// its gradient is partial).
    public func setAttributes(ofParameter name: String, _ change: (inout ParameterAttributes) -> Void) {
        change(&parameterAttributes[name, default: ParameterAttributes()])
    }

    /// Changes the attributes of every parameter of this module's own.
    public func setAttributesOfParameters(_ change: (inout ParameterAttributes) -> Void) {
        for (name, _) in parameters { setAttributes(ofParameter: name, change) }
    }

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

/// Names one hook registered on a module, to remove it (`Module.removeHook`).
public struct ForwardHookHandle: Hashable, Sendable {
    let id: Int
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
    var p = t.madeContiguous().detached().to(DevicePlacement.current)
    p.requiresGrad = true
    return p
}
