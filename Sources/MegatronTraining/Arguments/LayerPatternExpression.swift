/// Megatron's layer-pattern values (`--linear-attention-freq`, `--moe-layer-freq`, `--window-attn-skip-freq`, evaluated by Python there): an integer, or a
/// list expression built from `[a, b, ...]`, `+` (concatenation), `*` (repetition) and parentheses.
///
/// ```swift
/// try LayerPatternExpression.evaluate("([1]*3+[0]*1)*2", flag: "--linear-attention-freq")   // .list([1, 1, 1, 0, 1, 1, 1, 0])
/// ```
enum LayerPatternExpression: Equatable {
    case int(Int)
    case list([Int])

    static func evaluate(_ text: String, flag: String) throws -> LayerPatternExpression {
        var parser = Parser(characters: Array(text.filter { !$0.isWhitespace }), text: text, flag: flag)
        let value = try parser.sum()
        guard parser.position == parser.characters.count else { throw parser.error("unexpected '\(parser.characters[parser.position])'") }
        return value
    }

    /// Per layer of `numLayers`, whether `flag`'s value `text` selects it: an integer N gives `frequency(N)`; a
    /// list gives 1 (`one`, selected) or 0 (`zero`) per layer.
    static func layers(_ text: String, flag: String, numLayers: Int, one: String, zero: String,
                       frequency: (Int) -> [Bool]) throws -> [Bool] {
        switch try evaluate(text, flag: flag) {
        case .int(let n):
            guard n > 0 else { throw ArgumentError("\(flag) must be positive, got \(n)") }
            return frequency(n)
        case .list(let values):
            guard values.count == numLayers else {
                throw ArgumentError("\(flag) gives \(values.count) layers, but --num-layers is \(numLayers)")
            }
            guard values.allSatisfy({ $0 == 0 || $0 == 1 }) else {
                throw ArgumentError("\(flag) must list 1 (\(one)) or 0 (\(zero)) per layer, got \(values)")
            }
            return values.map { $0 == 1 }
        }
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

        mutating func sum() throws -> LayerPatternExpression {
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

        mutating func product() throws -> LayerPatternExpression {
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

        mutating func atom() throws -> LayerPatternExpression {
            if take("(") {
                let value = try sum()
                guard take(")") else { throw error("missing ')'") }
                return value
            }
            if take("[") {
                var items: [Int] = []
                while !take("]") {
                    if !items.isEmpty {
                        guard take(",") else { throw error("missing ',' or ']'") }
                        if take("]") { break }   // a trailing comma, as Python allows
                    }
                    guard case .int(let n) = try integer() else { throw error("lists hold integers") }
                    items.append(n)
                }
                return .list(items)
            }
            return try integer()
        }

        mutating func integer() throws -> LayerPatternExpression {
            let start = position
            while position < characters.count, characters[position].isNumber { position += 1 }
            guard position > start, let n = Int(String(characters[start..<position])) else {
                throw error(position < characters.count ? "unexpected '\(characters[position])'" : "unexpected end")
            }
            return .int(n)
        }
    }
}
