/// The Python list expressions Megatron's per-layer pattern flags take (`--window-attn-skip-freq "([1]*3+[0])*2"`,
/// evaluated there by `_eval_pattern`): integer list literals joined by `+` and repeated by `* N` (either side),
/// with parentheses. Nothing else of Python is accepted.
///
/// ```swift
/// try LayerPatternExpression.evaluate("([1]*3+[0]*1)*2")   // [1, 1, 1, 0, 1, 1, 1, 0]
/// ```
enum LayerPatternExpression {
    /// The list `text` denotes; throws naming what could not be read.
    static func evaluate(_ text: String) throws -> [Int] {
        var parser = Parser(characters: Array(text.filter { !$0.isWhitespace }))
        let value = try parser.sum()
        guard parser.position == parser.characters.count else { throw parser.failure("unexpected '\(parser.characters[parser.position])'") }
        guard case .list(let list) = value else { throw parser.failure("the expression is a number, not a list") }
        return list
    }

    private enum Value {
        case number(Int)
        case list([Int])
    }

    private struct Parser {
        let characters: [Character]
        var position = 0

        func failure(_ what: String) -> ArgumentError {
            ArgumentError("'\(String(characters))' is not a layer pattern such as [1,1,0]*2 or ([1]*3+[0])*2: \(what)")
        }

        mutating func sum() throws -> Value {
            var value = try product()
            while take("+") {
                guard case .list(let left) = value, case .list(let right) = try product() else { throw failure("+ joins lists") }
                value = .list(left + right)
            }
            return value
        }

        mutating func product() throws -> Value {
            var value = try atom()
            while take("*") {
                switch (value, try atom()) {
                case (.list(let list), .number(let n)), (.number(let n), .list(let list)):
                    guard n >= 0 else { throw failure("a list repeats a non-negative number of times") }
                    value = .list(Array([[Int]](repeating: list, count: n).joined()))
                case (.number(let a), .number(let b)): value = .number(a * b)
                default: throw failure("* repeats a list by a number")
                }
            }
            return value
        }

        mutating func atom() throws -> Value {
            if take("(") {
                let value = try sum()
                guard take(")") else { throw failure("missing )") }
                return value
            }
            if take("[") {
                var list: [Int] = []
                while !take("]") {
                    if !list.isEmpty { guard take(",") else { throw failure("missing , or ]") } }
                    if take("]") { break }   // a trailing comma
                    list.append(try number())
                }
                return .list(list)
            }
            return .number(try number())
        }

        mutating func number() throws -> Int {
            let start = position
            if position < characters.count, characters[position] == "-" { position += 1 }
            while position < characters.count, characters[position].isNumber { position += 1 }
            guard let n = Int(String(characters[start..<position])) else {
                throw failure(position < characters.count ? "unexpected '\(characters[position])'" : "it ends early")
            }
            return n
        }

        mutating func take(_ c: Character) -> Bool {
            guard position < characters.count, characters[position] == c else { return false }
            position += 1
            return true
        }
    }
}
