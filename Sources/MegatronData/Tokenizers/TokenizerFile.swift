import Foundation

/// Reading a tokenizer's files with errors that name the flag, the file and what is wrong with it.
enum TokenizerFile {
    /// Ids above this are refused: every real vocabulary is far smaller, and the decoder's table is sized by
    /// the largest id, so a crafted id must not ask for gigabytes.
    static let maxTokenID = 1 << 24

    /// The bytes of `path`, given by `flag`.
    static func contents(_ path: String, flag: String) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError("\(flag) \(path) does not exist")
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError("\(flag) \(path) cannot be read" + (isDirectory.boolValue ? " (it is a directory)" : ""))
        }
        return data
    }

    /// `path` parsed as JSON; a parse failure names the file and the parser's reason.
    static func json(_ path: String, flag: String) throws -> Any {
        let data = try contents(path, flag: flag)
        do {
            return try JSONSerialization.jsonObject(with: data)
        } catch {
            let reason = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(error)"
            throw TokenizerError("\(flag) \(path) is not valid JSON: \(reason)")
        }
    }

    /// A `token -> id` map whose ids all lie in `0...maxTokenID`.
    static func vocabulary(_ value: Any?, _ what: String) throws -> [String: Int] {
        guard let object = value as? [String: Any] else { throw TokenizerError("\(what) must be a JSON object of token -> id") }
        if object.isEmpty { throw TokenizerError("\(what) is empty") }
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(object.count)
        for (token, id) in object {
            guard let id = id as? Int else { throw TokenizerError("\(what): token \(token.debugDescription) has id \(id), not an integer") }
            vocab[token] = try checkedID(id, "\(what): token \(token.debugDescription)")
        }
        return vocab
    }

    /// `id` when it lies in `0...maxTokenID`.
    static func checkedID(_ id: Int, _ what: String) throws -> Int {
        guard id >= 0 && id <= maxTokenID else {
            throw TokenizerError("\(what) has id \(id), outside 0...\(maxTokenID)")
        }
        return id
    }
}
