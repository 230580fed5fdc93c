import Foundation

/// What a subcommand run by `megatron launch` learns about its place in the job: the environment and the
/// world communicator. In thread mode (no GPU, or `--threads`) every rank is a thread of the launcher
/// running the subcommand with its own context; in process mode a subcommand builds its communicator from
/// the environment (`NCCLCommunicator.world(environment:)`).
///
/// ```swift
/// if let context = RankContext.current {            // inside `megatron launch --threads ...`
///     let state = try ParallelState(layout: layout, world: context.world)
/// }
/// ```
public struct RankContext {
    public var environment: DistributedEnvironment
    public var world: Communicator

    public init(environment: DistributedEnvironment, world: Communicator) {
        self.environment = environment
        self.world = world
    }

    private static let key = "MegatronParallel.RankContext"

    /// The context of the rank this thread runs, if it runs one.
    public static var current: RankContext? {
        (Thread.current.threadDictionary[key] as? Box)?.context
    }

    /// Runs `body` with `context` as this thread's `current`.
    public static func withCurrent<T>(_ context: RankContext, _ body: () throws -> T) rethrows -> T {
        let dictionary = Thread.current.threadDictionary
        let previous = dictionary[key]
        dictionary[key] = Box(context)
        defer { dictionary[key] = previous }
        return try body()
    }

    /// Runs `body` for each of `worldSize` ranks as threads of this process over `ThreadCommunicator`, with
    /// each thread's `current` set; the first failure is rethrown naming its rank. With `log`, the ranks'
    /// communicators record into it (`RecordingCommunicator`).
    public static func runThreads(worldSize: Int, timeout: TimeInterval = 300, log: CommunicationLog? = nil,
                                  _ body: @escaping (RankContext) throws -> Void) throws {
        _ = try ThreadCommunicator.run(worldSize: worldSize, timeout: timeout) { threads in
            let world: Communicator = log.map { RecordingCommunicator(world: threads, log: $0) } ?? threads
            let environment = DistributedEnvironment(rank: world.rank, worldSize: worldSize, localRank: world.rank,
                                                     masterAddress: "127.0.0.1",
                                                     masterPort: DistributedEnvironment.defaultPort)
            let context = RankContext(environment: environment, world: world)
            try withCurrent(context) { try body(context) }
        }
    }

    private final class Box {
        let context: RankContext
        init(_ context: RankContext) { self.context = context }
    }
}
