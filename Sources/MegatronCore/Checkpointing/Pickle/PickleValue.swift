import MegatronTensor

/// A Python class or function a pickle names (`GLOBAL module name`), never resolved: only compared against the
/// names `PickleGlobals` allows.
public struct PickleGlobal: Hashable, Sendable, CustomStringConvertible {
    public let module: String
    public let name: String

    public init(_ module: String, _ name: String) { (self.module, self.name) = (module, name) }

    public var description: String { "\(module).\(name)" }
}

/// The data a pickle describes, with every object construction kept as data: `object` records the class (or
/// function), its arguments and its `BUILD` state instead of calling anything.
///
/// ```swift
/// let common = try PickleReader.read(bytes)            // torch.save([{'args': Namespace(...), 'iteration': 7}])
/// let iteration = common[0]?["iteration"]?.intValue   // 7
/// let layers = common[0]?["args"]?.attribute("num_layers")?.intValue
/// ```
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list([PickleValue])
    /// A dict (or `OrderedDict`), in insertion order.
    case dict([Pair])
    case global(PickleGlobal)
    /// `callable(*arguments)` (REDUCE) or `cls.__new__(cls, *arguments)` (NEWOBJ), then `BUILD(state)`: recorded,
    /// never run.
    case object(PickleObject)
    /// A persistent id (`BINPERSID`): torch.save refers to tensor storages this way.
    case persistent(PickleValue)
    /// A tensor, as `TorchSave` reads or writes it (`torch._utils._rebuild_tensor_v2` over a storage).
    case tensor(Tensor)

    public struct Pair {
        public var key: PickleValue
        public var value: PickleValue
        public init(_ key: PickleValue, _ value: PickleValue) { (self.key, self.value) = (key, value) }
    }

    /// A dict with string keys, in the given order.
    public static func stringDict(_ pairs: [(String, PickleValue)]) -> PickleValue {
        .dict(pairs.map { Pair(.string($0.0), $0.1) })
    }

    public var intValue: Int? {
        switch self {
        case .int(let v): v
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .float(let v): v
        case .int(let v): Double(v)
        default: nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var isNone: Bool {
        if case .none = self { return true }
        return false
    }

    /// The elements of a list or tuple.
    public var elements: [PickleValue]? {
        switch self {
        case .list(let items), .tuple(let items): items
        default: nil
        }
    }

    /// The integers of a list, tuple or `torch.Size((...))`.
    public var intArray: [Int]? {
        if case .object(let o) = self, o.callable == PickleGlobals.torchSize { return o.arguments.first?.intArray }
        return elements.flatMap { items in
            let ints = items.compactMap(\.intValue)
            return ints.count == items.count ? ints : nil
        }
    }

    /// The pairs of a dict.
    public var pairs: [Pair]? {
        if case .dict(let pairs) = self { return pairs }
        return nil
    }

    public var tensorValue: Tensor? {
        if case .tensor(let t) = self { return t }
        return nil
    }

    /// The value a dict holds under the string `key`.
    public subscript(key: String) -> PickleValue? {
        pairs?.last { $0.key.stringValue == key }?.value
    }

    /// Element `index` of a list or tuple.
    public subscript(index: Int) -> PickleValue? {
        guard let items = elements, items.indices.contains(index) else { return nil }
        return items[index]
    }

    /// An object's attribute: the `name` entry of its `BUILD` state dict (how `argparse.Namespace` and dataclasses
    /// are pickled).
    public func attribute(_ name: String) -> PickleValue? {
        guard case .object(let o) = self else { return nil }
        return o.state?[name]
    }
}

/// An object a pickle constructs, recorded as data.
public struct PickleObject {
    public var callable: PickleGlobal
    public var arguments: [PickleValue]
    public var state: PickleValue?
    /// NEWOBJ (`cls.__new__(cls, *arguments)`) rather than REDUCE (`callable(*arguments)`).
    public var isNewObject: Bool

    public init(_ callable: PickleGlobal, arguments: [PickleValue] = [], state: PickleValue? = nil, isNewObject: Bool = false) {
        (self.callable, self.arguments, self.state, self.isNewObject) = (callable, arguments, state, isNewObject)
    }
}

/// A pickle this build does not read, with what is wrong.
public struct PickleError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
