import Foundation
import MegatronParallel
import XCTest

/// The store operations the launchers of a job of several nodes end it with: first-writer-wins marks, reads
/// that do not wait, and marks the server leaves when a client's connection ends.
final class RendezvousStoreMarksTests: XCTestCase {
    func testSetIfAbsentKeepsTheFirstValueAndValueOfDoesNotWait() throws {
        let store = try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true)
        XCTAssertNil(try store.value(of: "reason"))
        XCTAssertEqual(try store.setIfAbsent("reason", [1]), [1])
        XCTAssertEqual(try store.setIfAbsent("reason", [2]), [1], "the first writer wins")
        XCTAssertEqual(try store.value(of: "reason"), [1])
    }

    /// A client that ends without withdrawing its mark leaves it; one that withdraws it, or finds the key set
    /// already, leaves nothing new.
    func testAConnectionThatEndsLeavesItsMarkUnlessWithdrawn() throws {
        let server = try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true)
        func client() throws -> RendezvousStore {
            try RendezvousStore(host: "127.0.0.1", port: server.port, isServer: false, connectTimeout: 5)
        }
        do {
            let withdrawn = try client()
            try withdrawn.setOnDisconnect("gone", Array("node 2".utf8))
            try withdrawn.clearOnDisconnect("gone")
        }
        XCTAssertNil(try server.value(of: "gone"), "a withdrawn mark is not left")
        do {
            let vanishing = try client()
            try vanishing.setOnDisconnect("gone", Array("node 1".utf8))
        }
        XCTAssertEqual(String(decoding: try server.get("gone", timeout: 5), as: UTF8.self), "node 1")
        do {
            let late = try client()
            try late.setOnDisconnect("gone", Array("node 3".utf8))
        }
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(String(decoding: try XCTUnwrap(server.value(of: "gone")), as: UTF8.self), "node 1",
                       "a mark never replaces a value already there")
    }
}
