import Foundation
import MegatronParallel
import MegatronTensor

/// Where a training process stands in a parallel job, found the way Megatron's programs find it:
/// inside `megatron launch --threads` (ranks are threads, on the CPU), or from torchrun / SLURM /
/// `megatron launch` variables (one process per GPU, NCCL), or alone.
///
/// ```swift
/// let world = try TrainingWorld.current(arguments)   // nil when the job has one rank
/// let trainer = try Pretrainer(arguments: arguments, parallel: world?.parallel, log: { print($0) })
/// ```
public struct TrainingWorld {
    /// Every group of this rank, built once for the run.
    public let parallel: ParallelState

    /// The parallel state of this rank for `arguments`' parallel sizes; nil for a one-rank job.
    public static func current(_ arguments: PretrainArguments,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> TrainingWorld? {
        let world: Communicator
        if let context = RankContext.current {
            world = context.world
        } else {
            let env = try DistributedEnvironment(environment)
            guard env.worldSize > 1 else {
                let tp = arguments.tensorModelParallelSize, pp = arguments.pipelineModelParallelSize
                guard tp == 1 else {
                    throw ArgumentError("--tensor-model-parallel-size \(tp) needs \(tp) ranks, but this process runs alone: start it "
                        + "with megatron launch --nproc-per-node \(tp) -- pretrain-gpt ... (on a CPU the ranks are threads), or torchrun")
                }
                guard pp == 1 else {
                    throw ArgumentError("--pipeline-model-parallel-size \(pp) needs \(pp) ranks, but this process runs alone: start it "
                        + "with megatron launch --nproc-per-node \(pp) -- pretrain-gpt ... (on a CPU the ranks are threads), or torchrun")
                }
                return nil
            }
            let context = try? CUDAContext.shared(ordinal: env.localRank, environment: arguments.cudaEnvironment(environment))
            guard context != nil, arguments.device != .cpu else {
                throw ArgumentError("a job of \(env.worldSize) processes needs one GPU per process (NCCL); on the CPU, "
                    + "run the ranks as threads: megatron launch --threads --nproc-per-node \(env.worldSize) -- pretrain-gpt ...")
            }
            let nccl = try NCCLCommunicator.world(environment: env, timeout: TimeInterval(arguments.distributedTimeoutMinutes) * 60)
            if let seconds = arguments.distributedTimeoutSecondsAfterInit { nccl.watchdog?.timeout = TimeInterval(seconds) }
            world = nccl
        }
        return try make(arguments, world: world)
    }

    /// The parallel state of `world` for `arguments`' parallel sizes.
    public static func make(_ arguments: PretrainArguments, world: Communicator) throws -> TrainingWorld {
        let layout: ParallelLayout
        do {
            layout = try ParallelLayout(worldSize: world.size, tensor: arguments.tensorModelParallelSize,
                                        pipeline: arguments.pipelineModelParallelSize, context: arguments.contextParallelSize,
                                        expert: arguments.expertModelParallelSize,
                                        expertTensor: arguments.expertTensorParallelSize)
        } catch let error as ParallelLayoutError {
            throw ArgumentError(error.description)
        }
        return TrainingWorld(parallel: try ParallelState(layout: layout, world: world))
    }
}
