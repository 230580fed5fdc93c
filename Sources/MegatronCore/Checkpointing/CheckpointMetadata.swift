import Foundation

/// A checkpoint's `metadata.json`, checksummed like its shards and read strictly.
///
/// The file is a JSON object whose first member, `metadata_crc32c`, holds the CRC-32C (8 hex digits) of every byte
/// after that member, so a truncated, torn or edited file is refused instead of read as zeros. Fields are read
/// through `Decodable` types: a missing or mistyped field is an error naming the field and the file.
///
/// ```swift
/// let manifest = try checkpoint.metadata.manifest()
/// struct Progress: Decodable { var consumed_samples: Int }   // or only the fields one reader needs
/// let progress = try checkpoint.metadata.decode(Progress.self)
/// ```
public struct CheckpointMetadata {
    /// The file's members as JSON parsed them (the checksum member included), for locating a field in a message.
    let values: [String: Any]
    /// Where the metadata was read from, for messages.
    public let file: URL
    let json: Data

    static let checksumKey = "metadata_crc32c"
    /// A member inside the checksummed part saying a checksum goes with it, so deleting the checksum is detected.
    static let checksummedKey = "metadata_checksummed"
    /// The file's first bytes up to the checksum's hex digits; the digits are followed by `checksumEnd`.
    static let checksumStart = Data("{\n  \"\(checksumKey)\" : \"".utf8)
    static let checksumEnd = Data("\",".utf8)
    static let checksumDigits = 8

    /// `manifest` as the bytes of a metadata.json.
    static func encode(_ manifest: CheckpointManifest) throws -> Data {
        guard let values = try JSONSerialization.jsonObject(with: JSONEncoder().encode(manifest)) as? [String: Any] else {
            preconditionFailure("a CheckpointManifest encodes as a JSON object")
        }
        return try encode(values)
    }

    /// JSON members as the bytes of a metadata.json (sorted keys, pretty-printed, the checksum first).
    static func encode(_ values: [String: Any]) throws -> Data {
        precondition(values[checksumKey] == nil, "the checksum member is added here, never by the caller")
        var values = values
        values[checksummedKey] = true
        let body = try JSONSerialization.data(withJSONObject: values, options: [.sortedKeys, .prettyPrinted])
        // `body` is "{...}": the checksum member goes in after its brace and covers everything that follows.
        let rest = body.dropFirst()
        let crc = rest.withUnsafeBytes { CRC32C.checksum($0) }
        return checksumStart + Data(String(format: "%08x", crc).utf8) + checksumEnd + rest
    }

    /// Parses and verifies metadata.json's bytes. Files without the checksum member (written before it existed) are
    /// accepted, then read as strictly as any other.
    static func decode(_ data: Data, file: URL) throws -> CheckpointMetadata {
        func fail(_ why: String) -> CheckpointError { CheckpointError("\(file.path): \(why)") }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw fail("not valid JSON (\(data.count) bytes; truncated or corrupt?)")
        }
        guard let values = object as? [String: Any] else { throw fail("not a JSON object") }
        if values[checksumKey] != nil {
            let stored = try storedChecksum(data, file: file)
            let rest = data.dropFirst(checksumStart.count + checksumDigits + checksumEnd.count)
            guard rest.withUnsafeBytes({ CRC32C.checksum($0) }) == stored else {
                throw fail("checksum differs from the one recorded in \(checksumKey); the file is corrupt or was edited")
            }
        } else if values[checksummedKey] != nil {
            throw fail("its checksum member \(checksumKey) was removed; the file was edited")
        }
        return CheckpointMetadata(values: values, file: file, json: data)
    }

    /// The checksum the file records, which must sit where `encode` put it.
    static func storedChecksum(_ data: Data, file: URL) throws -> UInt32 {
        let digitsStart = checksumStart.count, digitsEnd = digitsStart + checksumDigits
        guard data.count >= digitsEnd + checksumEnd.count, data.prefix(digitsStart) == checksumStart,
              data[data.startIndex + digitsEnd ..< data.startIndex + digitsEnd + checksumEnd.count] == checksumEnd,
              let crc = UInt32(String(decoding: data[data.startIndex + digitsStart ..< data.startIndex + digitsEnd], as: UTF8.self),
                               radix: 16)
        else { throw CheckpointError("\(file.path): \(checksumKey) is not the file's first member as written; the file was edited") }
        return crc
    }

    /// The whole manifest, every field checked against its type. Errors name the field and the file.
    public func manifest() throws -> CheckpointManifest { try decode(CheckpointManifest.self) }

    /// The fields `T` declares (other members are ignored). Errors name the field (`rng.dropout_offset`) and the file.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: json)
        } catch let error as DecodingError {
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
               let field = Self.integerFieldHoldingAFraction(type, in: values) {
                throw CheckpointError("\(file.path): \(field)")
            }
            throw CheckpointError("\(file.path): \(Self.describe(error))")
        } catch {
            throw CheckpointError("\(file.path): \(error)")
        }
    }

    /// An error for a field whose value is out of its range.
    public func invalid(_ field: String, _ why: String) -> CheckpointError {
        CheckpointError("\(file.path): field '\(field)' \(why)")
    }

    /// JSONDecoder reports a number that does not fit an integer field (a fraction, or out of range) as invalid JSON,
    /// without the field. This finds the field: such numbers become strings, and the decoder then names the first
    /// one it meets. A number field that is not an integer one (a learning rate) is put back and the search goes on.
    static func integerFieldHoldingAFraction<T: Decodable>(_ type: T.Type, in values: [String: Any]) -> String? {
        var suspects = unfitNumbers(values, at: [])
        while !suspects.isEmpty {
            let edited = suspects.reduce(values as Any) { tree, suspect in replacing(tree, at: suspect.0[...], with: "\(suspect.1)") }
            guard let data = try? JSONSerialization.data(withJSONObject: edited) else { return nil }
            do {
                _ = try JSONDecoder().decode(type, from: data)
                return nil
            } catch DecodingError.typeMismatch(let expected, let context) {
                let path = context.codingPath.map(\.stringValue)
                guard let index = suspects.firstIndex(where: { $0.0.map(\.stringValue) == path }) else { return nil }
                if expected is any FixedWidthInteger.Type {
                    return "field '\(self.path(context.codingPath))' is not an integer (it holds \(suspects[index].1))"
                }
                suspects.remove(at: index)
            } catch {
                return nil
            }
        }
        return nil
    }

    /// Paths to numbers that are not integers of `Int`'s range.
    static func unfitNumbers(_ value: Any, at path: [CodingKeyPath]) -> [([CodingKeyPath], Double)] {
        switch value {
        case let object as [String: Any]:
            return object.keys.sorted().flatMap { unfitNumbers(object[$0]!, at: path + [CodingKeyPath(stringValue: $0)]) }
        case let array as [Any]:
            return array.indices.flatMap { unfitNumbers(array[$0], at: path + [CodingKeyPath(intValue: $0)]) }
        case let number as Double where number.rounded() != number || abs(number) >= 0x1p63:
            return [(path, number)]
        default:
            return []
        }
    }

    static func replacing(_ tree: Any, at path: ArraySlice<CodingKeyPath>, with replacement: Any) -> Any {
        guard let key = path.first else { return replacement }
        if var object = tree as? [String: Any], let child = object[key.stringValue] {
            object[key.stringValue] = replacing(child, at: path.dropFirst(), with: replacement)
            return object
        }
        if var array = tree as? [Any], let index = key.intValue, array.indices.contains(index) {
            array[index] = replacing(array[index], at: path.dropFirst(), with: replacement)
            return array
        }
        return tree
    }

    /// A member name or list index, as `DecodingError`s give them.
    struct CodingKeyPath: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(stringValue: String) { self.stringValue = stringValue }
        init(intValue: Int) {
            self.stringValue = "Index \(intValue)"
            self.intValue = intValue
        }
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context): return "field '\(path(context.codingPath + [key]))' is missing"
        case .typeMismatch(let type, let context): return "field '\(path(context.codingPath))' is not \(describe(type))"
        case .valueNotFound(let type, let context): return "field '\(path(context.codingPath))' is null, not \(describe(type))"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "unreadable: \(context.debugDescription)"
                : "field '\(path(context.codingPath))' is invalid: \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int64.Type, is UInt32.Type, is UInt64.Type: return "an integer"
        case is Float.Type, is Double.Type: return "a number"
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "a list" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a \(name)"
        }
    }
}
