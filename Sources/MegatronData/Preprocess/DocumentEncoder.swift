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

    func encode(_ line: [UInt8], lineNumber: Int, path: String) throws -> EncodedDocument {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(line), options: [])
        } catch {
            throw DatasetError("\(path) line \(lineNumber): not valid JSON (\(Self.reason(error)))")
        }
        guard let record = object as? [String: Any] else {
            throw DatasetError("\(path) line \(lineNumber): expected a JSON object, found \(type(of: object))")
        }
        var document = EncodedDocument(ids: [], lengths: [], bytes: line.count)
        for key in jsonKeys {
            guard let value = record[key] else {
                throw DatasetError("\(path) line \(lineNumber): no key \"\(key)\" (keys: \(record.keys.sorted().joined(separator: ", ")))")
            }
            let sentences: [String]
            if let text = value as? String {
                sentences = [text]
            } else if let list = value as? [Any], let texts = list as? [String] {
                sentences = texts
            } else {
                throw DatasetError("\(path) line \(lineNumber): \"\(key)\" must be a string or a list of strings")
            }
            var ids: [Int] = [], lengths: [Int] = []
            for sentence in sentences {
                let encoded = tokenizer.encode(sentence)
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

    private static func reason(_ error: Error) -> String {
        let ns = error as NSError
        return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
    }
}
