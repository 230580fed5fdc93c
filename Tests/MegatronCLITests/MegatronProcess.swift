import Foundation
import XCTest

/// The built `megatron` executable run as a user runs it: a subprocess with its own arguments, environment and
/// working directory. Bad-input tests use it to assert a clear message and a normal non-zero exit, never a trap
/// (a failed `precondition` ends the process on a signal, with no text in release builds).
struct MegatronProcess {
    /// How one run ended.
    struct Outcome {
        var status: Int32
        /// True when the process ended on a signal (a trap: SIGILL / SIGTRAP / SIGSEGV ...) rather than by exiting.
        var killedBySignal: Bool
        var stdout: String
        var stderr: String
        /// Both streams, for messages and assertion text.
        var output: String { stdout + stderr }
    }

    let binary: URL

    /// The executable SwiftPM builds next to the test bundle; skips the test when it is not there.
    static func built() throws -> MegatronProcess {
        let binary = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("megatron")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw XCTSkip("the megatron executable is not built next to the tests")
        }
        return MegatronProcess(binary: binary)
    }

    /// Runs `megatron arguments...` to completion (killed after `timeout` seconds). The CPU is used even on a
    /// GPU machine unless `environment` sets `CUDA_VISIBLE_DEVICES`.
    func run(_ arguments: [String], environment: [String: String] = [:], directory: URL? = nil,
             stdin: Data? = nil, timeout: TimeInterval = 120) throws -> Outcome {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["CUDA_VISIBLE_DEVICES"] = ""
        for (key, value) in environment { env[key] = value }
        process.environment = env
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        }
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        // Read both pipes concurrently: a child filling one pipe while we block on the other would hang.
        let errRead = ReadInBackground(err.fileHandleForReading)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = errRead.wait()
        process.waitUntilExit()
        watchdog.cancel()
        return Outcome(status: process.terminationStatus, killedBySignal: process.terminationReason == .uncaughtSignal,
                       stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs `megatron arguments...` and asserts that it failed cleanly: it exited (no signal), non-zero, and its
    /// output names every one of `mentions` (case-sensitive substrings: the flag, file or value at fault).
    @discardableResult
    func assertCleanFailure(_ arguments: [String], mentions: [String], environment: [String: String] = [:],
                            directory: URL? = nil, stdin: Data? = nil,
                            file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
        let outcome = try run(arguments, environment: environment, directory: directory, stdin: stdin)
        let command = "megatron " + arguments.joined(separator: " ")
        XCTAssertFalse(outcome.killedBySignal, "\(command) ended on signal \(outcome.status):\n\(outcome.output)",
                       file: file, line: line)
        XCTAssertNotEqual(outcome.status, 0, "\(command) exited 0:\n\(outcome.output)", file: file, line: line)
        for mention in mentions {
            XCTAssertTrue(outcome.output.contains(mention), "\(command) does not mention '\(mention)':\n\(outcome.output)",
                          file: file, line: line)
        }
        return outcome
    }
}

/// A file handle read to its end on another thread.
private final class ReadInBackground: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchGroup()

    init(_ handle: FileHandle) {
        done.enter()
        DispatchQueue.global().async { [self] in
            data = handle.readDataToEndOfFile()
            done.leave()
        }
    }

    func wait() -> Data {
        done.wait()
        return data
    }
}
