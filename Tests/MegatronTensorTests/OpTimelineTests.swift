import XCTest
@testable import MegatronTensor

/// The idle-time arithmetic of MEGATRON_PROFILE=timeline, on spans laid out by hand.
final class OpTimelineTests: XCTestCase {
    func testIdleTimeIsChargedToTheOpThatWaited() {
        let spans: [OpTimeline.Span] = [
            .init(label: "matmul", start: 0, end: 1),
            .init(label: "norm", start: 1, end: 1.5),        // back to back: no idle
            .init(label: "copy to host", start: 3.5, end: 4, hostBefore: 1.75, hostInside: 0.25), // 2 ms idle before it
            .init(label: "norm", start: 4.5, end: 5),         // 0.5 ms idle
            .init(label: "nested", start: 4.6, end: 4.8),     // inside the previous span: no idle, no extra busy
        ]
        let text = OpTimeline.table(spans, hostInside: 1.25, hostSpan: 6)
        XCTAssertTrue(text.hasPrefix("timeline: 5 ops over 5.0 ms of device time: busy 2.5 ms (50.0%), idle 2.5 ms; "
                                     + "host 6.0 ms, 1.2 ms of it enqueueing ops"), text)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[2], "       1       2.000 ms  copy to host")
        XCTAssertEqual(lines[3], "       1       0.500 ms  norm")
        XCTAssertTrue(lines.contains("     2.000 ms  host 1.750 / 0.000  before copy to host (after norm)"), text)
    }
}
