/// A JSON value with ordered keys that prints exactly as Python's `json.dumps(value, indent=4)`.
///
/// Megatron names its cache files by the MD5 of such a dump (`unique_description`), so the text must
/// match byte for byte: 4-space indents, `", "`-free separators (`","` + newline, `": "`), `repr` floats,
/// ASCII-only strings with `\uXXXX` escapes.
public indirect enum PythonJSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case array([PythonJSON])
    case object([(String, PythonJSON)])

    public static func == (lhs: PythonJSON, rhs: PythonJSON) -> Bool { lhs.dumps() == rhs.dumps() }

    /// The `json.dumps(indent=4)` text.
    public func dumps() -> String {
        var out = ""
        write(to: &out, level: 0)
        return out
    }

    private func write(to out: inout String, level: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .float(let d): out += Self.pythonRepr(d)
        case .string(let s): out += Self.quoted(s)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                out += (i == 0 ? "\n" : ",\n") + String(repeating: " ", count: 4 * (level + 1))
                item.write(to: &out, level: level + 1)
            }
            out += "\n" + String(repeating: " ", count: 4 * level) + "]"
        case .object(let pairs):
            if pairs.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (key, value)) in pairs.enumerated() {
                out += (i == 0 ? "\n" : ",\n") + String(repeating: " ", count: 4 * (level + 1))
                out += Self.quoted(key) + ": "
                value.write(to: &out, level: level + 1)
            }
            out += "\n" + String(repeating: " ", count: 4 * level) + "}"
        }
    }

    /// Python's `repr(float)`: shortest round-trip digits, as Swift's description (`0.1`, `5.0`, `1e-05`, `1e+16`).
    static func pythonRepr(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return "\(d)"
    }

    static func quoted(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out += String(UnicodeScalar(UInt8(unit)))
            default:
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        return out + "\""
    }
}
