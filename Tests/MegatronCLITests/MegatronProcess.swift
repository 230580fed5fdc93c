import Foundation
import XCTest
import MegatronTestSupport

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
    static func built() throws -> MegatronProcess { MegatronProcess(binary: try builtMegatronExecutable()) }

    /// A started `megatron` process whose output is being collected.
    final class Running {
        let process: Process
        private let out: ReadInBackground
        private let err: ReadInBackground

        fileprivate init(process: Process, out: ReadInBackground, err: ReadInBackground) {
            self.process = process
            self.out = out
            self.err = err
        }

        var pid: Int32 { process.processIdentifier }

        /// Waits for the process to end (terminating it after `timeout` seconds) and returns how it ended.
        func finish(timeout: TimeInterval = 120) -> Outcome {
            let process = self.process
            let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
            let (outData, errData) = (out.wait(), err.wait())
            process.waitUntilExit()
            watchdog.cancel()
            return Outcome(status: process.terminationStatus, killedBySignal: process.terminationReason == .uncaughtSignal,
                           stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
        }
    }

    /// Starts `megatron arguments...`. The CPU is used even on a GPU machine unless `environment` sets
    /// `CUDA_VISIBLE_DEVICES`.
    func start(_ arguments: [String], environment: [String: String] = [:], directory: URL? = nil,
               stdin: Data? = nil) throws -> Running {
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
        // Both pipes are read on their own threads: a child filling one while we block on the other would hang.
        return Running(process: process, out: ReadInBackground(out.fileHandleForReading),
                       err: ReadInBackground(err.fileHandleForReading))
    }

    /// Runs `megatron arguments...` to completion (killed after `timeout` seconds).
    func run(_ arguments: [String], environment: [String: String] = [:], directory: URL? = nil,
             stdin: Data? = nil, timeout: TimeInterval = 120) throws -> Outcome {
        try start(arguments, environment: environment, directory: directory, stdin: stdin).finish(timeout: timeout)
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
