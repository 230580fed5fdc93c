/// A key written twice in one block mapping of a YAML file. PyYAML, which Megatron reads its configs with, keeps
/// the last value; Yams refuses the file. Megatron's own functional-test configs do this (a `MODEL_ARGS` flag
/// written twice), so the earlier lines of such a key are dropped before Yams reads the text, and the start-up
/// log names the keys.
///
/// ```swift
/// let (text, keys) = YAMLDuplicateKeys.keepingLast("a:\n  x: 1\n  x: 2\n")   // ("a:\n  x: 2\n", ["x"])
/// ```
enum YAMLDuplicateKeys {
    /// `text` with the earlier occurrences of each key repeated in one block mapping removed (with the lines
    /// nested under them), and the keys, in order. Keys in flow mappings or quotes are left as they are.
    static func keepingLast(_ text: String) -> (text: String, keys: [String]) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var parents: [(indent: Int, line: Int)] = []
        var seen: [String: Int] = [:]
        var dropped = Set<Int>(), keys: [String] = []
        for (index, line) in lines.enumerated() {
            guard let (indent, key) = blockKey(line) else { continue }
            while let last = parents.last, last.indent >= indent { parents.removeLast() }
            let id = "\(parents.last?.line ?? -1)/\(key)"
            if let earlier = seen[id] {
                dropped.formUnion(block(at: earlier, indent: indent, in: lines))
                if !keys.contains(key) { keys.append(key) }
            }
            seen[id] = index
            parents.append((indent, index))
        }
        let kept = lines.indices.filter { !dropped.contains($0) }.map { lines[$0] }
        return (kept.joined(separator: "\n"), keys)
    }

    /// The indentation and key of a `key: value` (or `key:`) line of a block mapping.
    static func blockKey(_ line: String) -> (Int, String)? {
        let indent = line.prefix { $0 == " " }.count
        let rest = line.dropFirst(indent)
        // Not a comment, a list item (`- x`), or a quoted or flow key.
        guard let first = rest.first, !"#'\"{[".contains(first), !(rest.hasPrefix("- ") || rest == "-"),
              let colon = rest.firstIndex(of: ":") else { return nil }
        let after = rest[rest.index(after: colon)...]
        guard after.isEmpty || after.first == " " else { return nil }
        return (indent, String(rest[..<colon]).trimmingCharacters(in: .whitespaces))
    }

    /// Line `start` and the lines nested under it (more indented, or blank).
    static func block(at start: Int, indent: Int, in lines: [String]) -> [Int] {
        var end = start + 1
        while end < lines.count {
            let line = lines[end]
            let blank = line.allSatisfy { $0 == " " }
            guard blank || line.prefix(while: { $0 == " " }).count > indent else { break }
            end += 1
        }
        return Array(start..<end)
    }
}
