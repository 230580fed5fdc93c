import MegatronCore
import MegatronCUDA
import MegatronTensor

/// On a GPU, Gated DeltaNet sizes its CUDA kernels take (one thread carries a state column of at most 256 keys,
/// a block at most 1024 value columns); refused at start-up otherwise.
func checkGatedDeltaNetKernels(_ config: TransformerConfig, on device: Device) throws {
    guard device != .cpu, let gdn = config.gatedDeltaNet, gdn.layers.contains(true) else { return }
    if gdn.keyHeadDim > GatedDeltaRuleProblem.maxKeyDim || gdn.valueHeadDim > GatedDeltaRuleProblem.maxValueDim {
        throw ArgumentError("--linear-key-head-dim \(gdn.keyHeadDim) / --linear-value-head-dim \(gdn.valueHeadDim): the GPU "
            + "kernels take at most \(GatedDeltaRuleProblem.maxKeyDim) / \(GatedDeltaRuleProblem.maxValueDim); "
            + "choose smaller heads, or train on the CPU (--device cpu)")
    }
}

extension PretrainArguments {
    /// The Gated DeltaNet layers `--experimental-attention-variant gated_delta_net` (or `gdn`) asks for, with
    /// Megatron's checks of the `--linear-*` flags; nil without the variant (the `--linear-*` flags are then unused,
    /// as in Megatron).
    func gatedDeltaNetConfig() throws -> GatedDeltaNetConfig? {
        guard let variant = experimentalAttentionVariant else { return nil }
        guard let frequency = linearAttentionFreq else {
            throw ArgumentError("--experimental-attention-variant \(variant) needs --linear-attention-freq (which layers are "
                + "Gated DeltaNet and which attention), as in Megatron")
        }
        let config = GatedDeltaNetConfig(layers: try linearAttentionLayers(frequency), convKernelDim: linearConvKernelDim,
                                         keyHeadDim: linearKeyHeadDim, valueHeadDim: linearValueHeadDim,
                                         numKeyHeads: linearNumKeyHeads, numValueHeads: linearNumValueHeads)
        for (flag, value) in [("--linear-conv-kernel-dim", linearConvKernelDim), ("--linear-key-head-dim", linearKeyHeadDim),
                              ("--linear-value-head-dim", linearValueHeadDim), ("--linear-num-key-heads", linearNumKeyHeads),
                              ("--linear-num-value-heads", linearNumValueHeads)] where value <= 0 {
            throw ArgumentError("\(flag) must be positive, got \(value)")
        }
        guard linearNumValueHeads % linearNumKeyHeads == 0 else {
            throw ArgumentError("--linear-num-value-heads (\(linearNumValueHeads)) must be a multiple of --linear-num-key-heads (\(linearNumKeyHeads))")
        }
        let tp = tensorModelParallelSize
        for (flag, heads) in [("--linear-num-key-heads", linearNumKeyHeads), ("--linear-num-value-heads", linearNumValueHeads)]
        where heads % tp != 0 {
            throw ArgumentError("\(flag) (\(heads)) must be divisible by --tensor-model-parallel-size (\(tp))")
        }
        return config
    }

    /// Per layer, whether `--linear-attention-freq` makes it Gated DeltaNet: an integer N makes every N-th layer
    /// attention; a list (Python's syntax, e.g. `([1]*3+[0]*1)*3`) gives 1 (Gated DeltaNet) or 0 per layer.
    private func linearAttentionLayers(_ text: String) throws -> [Bool] {
        let flag = "--linear-attention-freq"
        switch try LayerPattern.evaluate(text, flag: flag) {
        case .int(let frequency):
            guard frequency > 0 else { throw ArgumentError("\(flag) must be positive, got \(frequency)") }
            return GatedDeltaNetConfig.pattern(frequency: frequency, numLayers: numLayers)
        case .list(let values):
            guard values.count == numLayers else {
                throw ArgumentError("\(flag) gives \(values.count) layers, but --num-layers is \(numLayers)")
            }
            guard values.allSatisfy({ $0 == 0 || $0 == 1 }) else {
                throw ArgumentError("\(flag) must list 1 (Gated DeltaNet) or 0 (attention) per layer, got \(values)")
            }
            return values.map { $0 == 1 }
        }
    }
}

/// Megatron's layer-pattern values (`--linear-attention-freq`, evaluated by Python there): an integer, or a
/// list expression built from `[a, b, ...]`, `+` (concatenation), `*` (repetition) and parentheses.
///
/// ```swift
/// try LayerPattern.evaluate("([1]*3+[0]*1)*2", flag: "--linear-attention-freq")   // .list([1, 1, 1, 0, 1, 1, 1, 0])
/// ```
enum LayerPattern: Equatable {
    case int(Int)
    case list([Int])

    static func evaluate(_ text: String, flag: String) throws -> LayerPattern {
        var parser = Parser(characters: Array(text.filter { !$0.isWhitespace }), text: text, flag: flag)
        let value = try parser.sum()
        guard parser.position == parser.characters.count else { throw parser.error("unexpected '\(parser.characters[parser.position])'") }
        return value
    }

    private struct Parser {
        let characters: [Character]
        let text: String, flag: String
        var position = 0

        func error(_ what: String) -> ArgumentError {
            ArgumentError("\(flag) '\(text)': \(what); give an integer or a list such as ([1]*3+[0]*1)*2")
        }

        mutating func take(_ c: Character) -> Bool {
            guard position < characters.count, characters[position] == c else { return false }
            position += 1
            return true
        }

        mutating func sum() throws -> LayerPattern {
            var value = try product()
            while take("+") {
                switch (value, try product()) {
                case (.int(let a), .int(let b)): value = .int(a + b)
                case (.list(let a), .list(let b)): value = .list(a + b)
                default: throw error("'+' joins two lists or adds two integers")
                }
            }
            return value
        }

        mutating func product() throws -> LayerPattern {
            var value = try atom()
            while take("*") {
                switch (value, try atom()) {
                case (.int(let a), .int(let b)): value = .int(a * b)
                case (.list(let a), .int(let n)), (.int(let n), .list(let a)):
                    guard n >= 0 && n <= 1 << 16 else { throw error("repeat count \(n) out of range") }
                    value = .list(Array([[Int]](repeating: a, count: n).joined()))
                default: throw error("'*' repeats a list by an integer")
                }
            }
            return value
        }

        mutating func atom() throws -> LayerPattern {
            if take("(") {
                let value = try sum()
                guard take(")") else { throw error("missing ')'") }
                return value
            }
            if take("[") {
                var items: [Int] = []
                if take("]") { return .list(items) }
                repeat {
                    guard case .int(let n) = try integer() else { throw error("lists hold integers") }
                    items.append(n)
                } while take(",")
                guard take("]") else { throw error("missing ']'") }
                return .list(items)
            }
            return try integer()
        }

        mutating func integer() throws -> LayerPattern {
            let start = position
            while position < characters.count, characters[position].isNumber { position += 1 }
            guard position > start, let n = Int(String(characters[start..<position])) else {
                throw error(position < characters.count ? "unexpected '\(characters[position])'" : "unexpected end")
            }
            return .int(n)
        }
    }
}
