import Foundation

/// Ends the process after a failure on a path that cannot throw and must not go on (a GPU kernel launch or
/// driver error, a cuBLASLt or NCCL error, device memory exhausted): flushes buffered output, writes
/// `error: <message>` to stderr and exits with status 1.
///
/// Why not `precondition` / `fatalError`: `-c release` builds drop `precondition` messages, and both end on a
/// signal (exit 132, read as a crash by launchers and schedulers) rather than an exit status. Exit handlers and
/// static destructors are skipped (`_exit`): another thread may be inside the CUDA driver, NCCL or NVRTC, whose
/// teardown under it hangs or aborts.
///
///     guard status == 0 else { exitWithError("all-reduce over 8 ranks failed: \(status)") }
public func exitWithError(_ message: String) -> Never {
    fflush(nil)
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    _exit(1)
}
