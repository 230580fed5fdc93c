import Foundation

/// Values as Python's `str()` prints them, for the lines Megatron prints straight from Python objects (its
/// argument dump, `num zeros`), so a parser written against Megatron's output reads ours unchanged.
///
/// ```swift
/// PythonText.float(6e-5)          // "6e-05"
/// PythonText.float(4_294_967_296) // "4294967296.0"
/// PythonText.value(["a", "b"])    // "['a', 'b']"
/// ```
enum PythonText {
    /// `repr(float)`: the shortest digits that read back as `value`, in fixed notation when the decimal
    /// exponent is in -4..<16 (always with a fractional part), else as `d.ddde±XX`.
    static func float(_ value: Double) -> String {
        format(shortest: value.description)
    }

    /// A `Float` as Python prints the double a flag's text parses to: a whole number exactly (`2**32` is
    /// `4294967296.0`), anything else by the float's own shortest digits, which are the text's digits for any
    /// flag value of up to seven significant digits.
    static func float(_ value: Float) -> String {
        value.isFinite && value == value.rounded() ? float(Double(value)) : format(shortest: value.description)
    }

    /// `str(value)` for the value types a Megatron argument holds: `None`, `True` / `False`, integers, floats,
    /// strings, and lists of them.
    static func value(_ value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return "None" }
            return self.value(wrapped)
        }
        switch value {
        case let flag as Bool: return flag ? "True" : "False"
        case let number as Float: return float(number)
        case let number as Double: return float(number)
        case let list as [Any]: return "[" + list.map(repr).joined(separator: ", ") + "]"
        case let choice as any FlagChoice: return choice.rawValue
        default: return "\(value)"
        }
    }

    /// `repr()`: strings quoted, everything else as `str()`.
    static func repr(_ value: Any) -> String {
        guard let text = value as? String else { return self.value(value) }
        let quote: Character = text.contains("'") && !text.contains("\"") ? "\"" : "'"
        var escaped = text.replacingOccurrences(of: "\\", with: "\\\\")
        if quote == "'" { escaped = escaped.replacingOccurrences(of: "'", with: "\\'") }
        return "\(quote)\(escaped)\(quote)"
    }

    /// Rewrites Swift's shortest round-trip text of a float in Python's layout.
    private static func format(shortest text: String) -> String {
        switch text {
        case "inf", "+inf": return "inf"
        case "-inf": return "-inf"
        case "nan", "-nan": return "nan"
        default: break
        }
        let negative = text.hasPrefix("-")
        let body = negative ? String(text.dropFirst()) : text
        let parts = body.lowercased().split(separator: "e", maxSplits: 1)
        let mantissa = String(parts[0])
        var exponent = parts.count > 1 ? Int(parts[1])! : 0
        let pieces = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        let whole = String(pieces[0]), fraction = pieces.count > 1 ? String(pieces[1]) : ""
        // value = 0.<digits> x 10^(point), digits without leading or trailing zeros.
        var digits = whole + fraction
        var point = whole.count + exponent
        while digits.first == "0" {
            digits.removeFirst()
            point -= 1
        }
        while digits.last == "0" { digits.removeLast() }
        let sign = negative ? "-" : ""
        if digits.isEmpty { return sign + "0.0" }
        exponent = point - 1
        if (-4..<16).contains(exponent) {
            if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + digits }
            if point >= digits.count { return sign + digits + String(repeating: "0", count: point - digits.count) + ".0" }
            let cut = digits.index(digits.startIndex, offsetBy: point)
            return sign + digits[..<cut] + "." + digits[cut...]
        }
        let head = String(digits.prefix(1)), tail = String(digits.dropFirst())
        let power = (exponent < 0 ? "-" : "+") + String(format: "%02d", abs(exponent))
        return sign + head + (tail.isEmpty ? "" : "." + tail) + "e" + power
    }
}
