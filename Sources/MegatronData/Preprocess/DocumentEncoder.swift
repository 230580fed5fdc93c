import Foundation

/// One JSONL line turned into token ids per JSON key (Megatron's `Encoder.encode`).
struct EncodedDocument {
    /// Per key: all ids of the document and the lengths of its sequences (sentences).
    var ids: [[Int]]
    var lengths: [[Int]]
    var bytes: Int
}

/// Tokenizes JSONL documents as Megatron's `tools/preprocess_data.py` does without sentence splitting:
/// a string value is one sentence, a list of strings is several; empty sentences are dropped; with
/// `appendEOD` the EOD id ends every non-empty document and counts in its last sentence.
struct DocumentEncoder: Sendable {
    let tokenizer: any Tokenizer
    let jsonKeys: [String]
    let appendEOD: Bool

    /// The document of one line; nil for a blank line, which holds none. Anything else that is not a JSON
    /// object with the keys as strings (or lists of strings) is an error naming the file and line.
    func encode(_ line: [UInt8], lineNumber: Int, path: String) throws -> EncodedDocument? {
        func failure(_ what: String) -> DatasetError { DatasetError("\(path) line \(lineNumber): \(what)") }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) { return nil }
        if let offset = Self.firstInvalidUTF8(line) {
            throw failure("invalid UTF-8 at byte \(offset) of the line (JSONL input must be UTF-8 text)")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(line), options: [])
        } catch {
            throw failure("not valid JSON (\(Self.reason(error)))")
        }
        guard let record = object as? [String: Any] else {
            throw failure("expected a JSON object, found \(Self.jsonKind(object))")
        }
        var document = EncodedDocument(ids: [], lengths: [], bytes: line.count)
        for key in jsonKeys {
            guard let value = record[key] else {
                let keys = record.keys.sorted()
                let listed = keys.prefix(10).joined(separator: ", ") + (keys.count > 10 ? ", ..." : "")
                throw failure("no key \"\(key)\" (the line has: \(listed)); choose the keys to read with --json-keys")
            }
            let sentences: [String]
            if let text = value as? String {
                sentences = [text]
            } else if let list = value as? [Any], let texts = list as? [String] {
                sentences = texts
            } else {
                throw failure("\"\(key)\" must be a string or a list of strings, found \(Self.jsonKind(value))")
            }
            var ids: [Int] = [], lengths: [Int] = []
            for sentence in sentences {
                let encoded: [Int]
                do {
                    encoded = try tokenizer.encode(sentence)
                } catch let error as TokenizerError {
                    throw failure("\"\(key)\": \(error.description)")
                }
                guard !encoded.isEmpty else { continue }
                ids += encoded
                lengths.append(encoded.count)
            }
            if !ids.isEmpty && appendEOD {
                ids.append(tokenizer.eod)
                lengths[lengths.count - 1] += 1
            }
            document.ids.append(ids)
            document.lengths.append(lengths)
        }
        return document
    }

    /// Byte offset of the first byte that is not part of valid UTF-8, or nil.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// The JSON type of a parsed value, as a user reads it.
    private static func jsonKind(_ value: Any) -> String {
        switch value {
        case is String: return "a string"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        case is NSNumber: return "a number or boolean"
        default: return "\(type(of: value))"
        }
    }

    private static func reason(_ error: Error) -> String {
        let ns = error as NSError
        return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
    }
}
