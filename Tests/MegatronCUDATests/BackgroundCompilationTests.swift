import Foundation
import XCTest
@testable import MegatronCUDA

/// The concurrency under background kernel compilation: `BackgroundTask`, `CompilationExitGuard`,
/// the disk cache under concurrent writers. CPU only; no GPU or NVRTC needed.
final class BackgroundCompilationTests: XCTestCase {
    func testTaskRunsOnceAndEveryCallerGetsItsValue() {
        let counter = Counter()
        let task = BackgroundTask { () -> Int in
            counter.increment()
            Thread.sleep(forTimeInterval: 0.05)
            return 42
        }
        XCTAssertNil(task.finishedResult)
        task.start()
        let values = Locked([Int]())
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let value = try? task.value()
            values.update { $0.append(value ?? -1) }
        }
        XCTAssertEqual(values.value, [Int](repeating: 42, count: 8))
        XCTAssertEqual(counter.value, 1, "the work ran once, whoever started it")
        XCTAssertEqual(try task.finishedResult?.get(), 42)
    }

    func testTaskErrorReachesEveryCaller() {
        let error = CUDAError.compilation(kernel: "broken.cu", options: ["--std=c++17"], log: "error: undefined_name")
        let task = BackgroundTask<Int> { throw error }
        task.start()
        for _ in 0..<2 {
            XCTAssertThrowsError(try task.value()) { XCTAssertEqual($0 as? CUDAError, error) }
        }
    }

    /// A caller that finds the work not started (all workers busy) runs it itself rather than waiting.
    func testCallerRunsWorkThatNoWorkerStarted() throws {
        let caller = pthread_self()
        let task = BackgroundTask { pthread_equal(pthread_self(), caller) != 0 }
        XCTAssertTrue(try task.value(), "value() ran the unstarted work on the calling thread")
        task.start()   // a worker arriving later finds it done and does nothing
        XCTAssertTrue(try task.value())
    }

    func testExitGuardDrainWaitsForRunningCompilationsAndRefusesNewOnes() throws {
        let arms = Counter(), prepares = Counter()
        let exitGuard = CompilationExitGuard(onArm: { arms.increment() })
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0), drained = DispatchSemaphore(value: 0)
        XCTAssertEqual(try exitGuard.run(prepare: { prepares.increment() }) { 1 }, 1)
        DispatchQueue.global().async {
            _ = try? exitGuard.run(prepare: { prepares.increment() }) {
                started.signal()
                release.wait()
            }
            finished.signal()
        }
        started.wait()
        XCTAssertEqual(exitGuard.activeCount, 1)
        DispatchQueue.global().async {
            exitGuard.drain()
            drained.signal()
        }
        XCTAssertEqual(drained.wait(timeout: .now() + 0.2), .timedOut, "drain waits while a compilation runs")
        release.signal()
        XCTAssertEqual(drained.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
        XCTAssertThrowsError(try exitGuard.run(prepare: {}) { XCTFail("ran after drain") }) {
            XCTAssertTrue("\($0)".contains("exiting"), "\($0)")
        }
        XCTAssertEqual(prepares.value, 1, "prepared once, before the first compilation")
        XCTAssertEqual(arms.value, 1)
    }

    /// Writers of one key in parallel (as threads compiling the same file, or several processes
    /// sharing the directory): readers see no file or one writer's whole image, never a mix, and no
    /// temporary file is left behind.
    func testConcurrentCacheWritesOfOneKeyStayWhole() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cache = KernelCache(directory: directory)
        let writers = 6
        func image(_ writer: Int) -> [UInt8] { [UInt8](repeating: UInt8(writer), count: 200_000 + writer * 1000) }
        let torn = Counter(), seen = Counter()
        DispatchQueue.concurrentPerform(iterations: 2 * writers) { index in
            for _ in 0..<20 {
                if index < writers {
                    cache.store(key: "k", image: image(index))
                } else if let bytes = cache.load(key: "k") {
                    seen.increment()
                    let writer = Int(bytes[0])
                    if writer >= writers || bytes != image(writer) { torn.increment() }
                }
            }
        }
        XCTAssertEqual(torn.value, 0, "a reader saw a partly written or mixed image (\(seen.value) reads)")
        let final = try XCTUnwrap(cache.load(key: "k"))
        XCTAssertEqual(final, image(Int(final[0])))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["k"], "no temporary files left")
    }
}

/// A thread-safe counter for the tests above.
final class Counter: @unchecked Sendable {
    private let state = Locked(0)
    func increment() { state.update { $0 += 1 } }
    var value: Int { state.value }
}

/// A value behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    func update(_ body: (inout Value) -> Void) {
        lock.lock()
        body(&stored)
        lock.unlock()
    }

    var value: Value {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
