import Foundation
import XCTest
@testable import MegatronParallel

/// A signal caught by one source after another in the same process (the launcher's watch, then a rank's
/// `--exit-signal-handler`; or two runs of one test process) reaches each in turn.
final class SignalCatchTests: XCTestCase {
    func testEachLaterSourceOfASignalStillReceivesIt() {
        for round in 1...3 {
            let received = DispatchSemaphore(value: 0)
            let source = catchSignal(SIGUSR2) { received.signal() }
            raise(SIGUSR2)
            XCTAssertEqual(received.wait(timeout: .now() + 10), .success, "source \(round) did not receive SIGUSR2")
            source.cancel()
        }
    }
}
