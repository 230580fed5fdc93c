import Foundation
import XCTest

extension XCTestCase {
    /// A fresh path under the temporary directory (`<prefix>-<UUID>`), not created; whatever the test puts
    /// there is removed when the test ends. Call it from the test or from `setUpWithError`.
    ///
    /// ```swift
    /// override func setUpWithError() throws { root = scratchPath("ckpt") }
    /// ```
    public func scratchPath(_ prefix: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// The same, created as an empty directory.
    public func scratchDirectory(_ prefix: String) throws -> URL {
        let url = scratchPath(prefix)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// The `megatron` executable SwiftPM builds next to the test bundle, or an XCTSkip when it is not there.
public func builtMegatronExecutable(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
    let binary = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("megatron")
    guard FileManager.default.isExecutableFile(atPath: binary.path) else {
        throw XCTSkip("the megatron executable is not built next to the tests", file: file, line: line)
    }
    return binary
}
