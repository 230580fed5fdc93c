import Foundation
import MegatronParallel
import XCTest

final class RendezvousStoreTests: XCTestCase {
    /// A server on a free loopback port and three client threads: a get waits for a later set, and
    /// concurrent adds hand out every count exactly once.
    func testSetGetAndAddAcrossThreads() throws {
        let server = try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true)
        let port = server.port
        let clients = 3
        let results = ResultSlots(count: clients)
        let done = DispatchGroup()
        for index in 0..<clients {
            done.enter()
            Thread {
                defer { done.leave() }
                results.set(index, Result {
                    let client = try RendezvousStore(host: "127.0.0.1", port: port, isServer: false, connectTimeout: 10)
                    let ticket = try client.add("arrivals", 1)
                    let id = try client.get("id", timeout: 10)
                    return [ticket] + id.map(Int.init)
                })
            }.start()
        }
        Thread.sleep(forTimeInterval: 0.2)
        try server.set("id", [1, 2, 255])
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success)
        let values = try results.values()
        XCTAssertEqual(Set(values.map { $0[0] }), [1, 2, 3])
        for value in values { XCTAssertEqual(Array(value.dropFirst()), [1, 2, 255]) }
        XCTAssertEqual(try server.add("arrivals", 0), 3)
        XCTAssertEqual(try server.add("arrivals", -5), -2)
    }

    func testGetTimesOutNamingTheAddressAndKey() throws {
        let store = try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true)
        XCTAssertThrowsError(try store.get("nccl-unique-id/world", timeout: 0.2)) { error in
            XCTAssertEqual("\(error)", "rendezvous store at 127.0.0.1:\(store.port): timed out waiting for "
                + "key 'nccl-unique-id/world' (waited 0.2 s)")
        }
    }

    func testConnectingToNoServerFailsNamingTheAddress() throws {
        // A port just released by a server is almost surely free.
        let port = try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true).port
        XCTAssertThrowsError(try RendezvousStore(host: "127.0.0.1", port: port, isServer: false, connectTimeout: 0.3)) {
            XCTAssertTrue("\($0)".contains("cannot connect to the rendezvous store at 127.0.0.1:\(port)"), "\($0)")
        }
    }
}

final class DistributedEnvironmentTests: XCTestCase {
    func testTorchrunVariables() throws {
        let env = try DistributedEnvironment(["RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                              "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "6000"])
        XCTAssertEqual(env, DistributedEnvironment(rank: 5, worldSize: 8, localRank: 1, masterAddress: "10.0.0.2",
                                                   masterPort: 6000))
    }

    func testSlurmVariablesAndDefaults() throws {
        let env = try DistributedEnvironment(["SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
                                              "SLURM_NODELIST": "gpu[003-005,7],login1"])
        XCTAssertEqual(env, DistributedEnvironment(rank: 9, worldSize: 16, localRank: 1, masterAddress: "gpu003",
                                                   masterPort: 29500))
    }

    func testNoLauncherIsASingleProcess() throws {
        XCTAssertEqual(try DistributedEnvironment([:]), .single)
    }

    func testSlurmNodeLists() throws {
        XCTAssertEqual(try DistributedEnvironment.firstHost(ofNodeList: "node[003-005,7]"), "node003")
        XCTAssertEqual(try DistributedEnvironment.firstHost(ofNodeList: "node[7,9-10]"), "node7")
        XCTAssertEqual(try DistributedEnvironment.firstHost(ofNodeList: "a1,b[1-2]"), "a1")
        XCTAssertEqual(try DistributedEnvironment.firstHost(ofNodeList: "single"), "single")
        XCTAssertThrowsError(try DistributedEnvironment.firstHost(ofNodeList: "node[1-2"))
    }

    func testBadValuesAreNamed() {
        XCTAssertThrowsError(try DistributedEnvironment(["RANK": "x", "WORLD_SIZE": "2"])) {
            XCTAssertEqual("\($0)", "environment variable RANK must be a non-negative integer, got 'x'")
        }
        XCTAssertThrowsError(try DistributedEnvironment(["RANK": "0"])) {
            XCTAssertEqual("\($0)", "environment variable WORLD_SIZE is not set")
        }
        let cases: [([String: String], String)] = [
            (["RANK": "2", "WORLD_SIZE": "2"], "RANK (2) must be less than WORLD_SIZE (2)"),
            (["RANK": "0", "WORLD_SIZE": "0"], "environment variable WORLD_SIZE must be at least 1, got 0"),
            (["SLURM_PROCID": "4", "SLURM_NTASKS": "4"], "SLURM_PROCID (4) must be less than SLURM_NTASKS (4)"),
            (["SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "-1"],
             "environment variable SLURM_LOCALID must be a non-negative integer, got '-1'"),
            (["RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"],
             "LOCAL_RANK (2) must be less than LOCAL_WORLD_SIZE (2)"),
            (["RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "3"], "LOCAL_RANK (3) must be less than WORLD_SIZE (2)"),
            (["RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "99999"],
             "environment variable MASTER_PORT must be a port number in 1...65535, got 99999"),
            (["RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "0"],
             "environment variable MASTER_PORT must be a port number in 1...65535, got 0"),
            (["RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": " "], "environment variable MASTER_ADDR is empty; set it to the host of rank 0"),
            (["LOCAL_RANK": "gpu1"], "environment variable LOCAL_RANK must be a non-negative integer, got 'gpu1'"),
        ]
        for (environment, message) in cases {
            XCTAssertThrowsError(try DistributedEnvironment(environment), "\(environment)") { XCTAssertEqual("\($0)", message) }
        }
        XCTAssertEqual(try DistributedEnvironment(["LOCAL_RANK": "3"]).localRank, 3, "a single process on the GPU LOCAL_RANK names")
    }
}

private final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<[Int], Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<[Int], Error>) { lock.withLock { slots[index] = result } }
    func values() throws -> [[Int]] { try lock.withLock { try slots.map { try $0!.get() } } }
}
