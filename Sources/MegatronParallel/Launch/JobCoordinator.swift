import Foundation

/// How the launchers of a job of several nodes end it together: node 0's launcher serves a store on the
/// control port (`LaunchPlan.controlPort`) and every launcher, node 0's too, is its client.
///
/// - A launcher whose rank fails, or which is interrupted, posts the reason; the first reason posted wins.
/// - Every launcher polls for a posted reason and stops its ranks when it finds one, so a rank that dies on
///   one node ends the job on all of them within a poll interval plus the grace period.
/// - A launcher that vanishes (SIGKILL, a crashed host) leaves its reason too: the store posts it when the
///   launcher's connection ends before it has finished. A node whose launcher loses node 0's store stops too.
/// - Node 0's launcher keeps the store up until every node has finished, so no node mistakes node 0's
///   normal exit for its loss.
final class JobCoordinator {
    static let failureKey = "launch/failure"
    static let finishedKey = "launch/finished"
    static let joinedKey = "launch/joined"

    let plan: LaunchPlan
    private let store: RendezvousStore
    private let started = Date()
    /// Seconds every node has to join before the job is failed for the missing ones.
    private let joinTimeout: TimeInterval
    private var everyoneJoined = false

    init(plan: LaunchPlan, joinTimeout: TimeInterval) throws {
        self.plan = plan
        self.joinTimeout = joinTimeout
        store = try RendezvousStore(host: plan.masterAddress, port: plan.controlPort, isServer: plan.nodeRank == 0,
                                    connectTimeout: joinTimeout)
        try store.setOnDisconnect(Self.failureKey,
                                  Array("the launcher of node \(plan.nodeRank) stopped answering (killed, or its host is down)".utf8))
        _ = try store.add(Self.joinedKey, 1)
    }

    /// The reason the job must stop, if a node posted one (or node 0's store is gone); nil while it runs.
    func failure() -> String? {
        do {
            if let posted = try store.value(of: Self.failureKey) { return String(decoding: posted, as: UTF8.self) }
            if !everyoneJoined {
                let joined = try Int(Int64(bigEndianBytes: store.value(of: Self.joinedKey) ?? []))
                everyoneJoined = joined == plan.nodes
                if !everyoneJoined && Date().timeIntervalSince(started) > joinTimeout {
                    return post("only \(joined) of \(plan.nodes) nodes' launchers joined within \(Int(joinTimeout)) s")
                }
            }
            return nil
        } catch {
            return "lost the launch coordinator of node 0 at \(plan.masterAddress):\(plan.controlPort): \(error)"
        }
    }

    /// Posts `reason` unless another node posted first; returns the reason that stands.
    @discardableResult
    func post(_ reason: String) -> String {
        guard let standing = try? store.setIfAbsent(Self.failureKey, Array(reason.utf8)) else { return reason }
        return String(decoding: standing, as: UTF8.self)
    }

    /// Records that this node's ranks have all ended. Node 0 then waits for the others: until every node has
    /// finished or, once a failure stands, at most `grace` seconds more (a node that never joined never finishes).
    func finish(grace: TimeInterval, pollInterval: TimeInterval) {
        _ = try? store.clearOnDisconnect(Self.failureKey)
        _ = try? store.add(Self.finishedKey, 1)
        guard plan.nodeRank == 0 else { return }
        var failedAt: Date?
        while let finished = try? store.value(of: Self.finishedKey), Int(Int64(bigEndianBytes: finished)) < plan.nodes {
            if failedAt == nil, failure() != nil { failedAt = Date() }
            if let failedAt, Date().timeIntervalSince(failedAt) > grace { return }
            Thread.sleep(forTimeInterval: pollInterval)
        }
    }
}
