import Foundation
import MegatronTensor

/// Megatron-LM's checkpoint formats in a checkpoint directory (tracker, `iter_XXXXXXX/`): `torch_dist` written and
/// read, the legacy `torch` format (`mp_rank_TT/model_optim_rng.pt` per tensor-parallel rank, `mp_rank_TT_PPP/` with
/// pipeline stages) read.
///
/// A `torch_dist` checkpoint written here holds the model under Megatron's keys, `args`, this build's own manifest
/// and the optimizer state in the distributed optimizer's `fully_reshardable` layout
/// (`optimizer.state.<param|exp_avg|exp_avg_sq>.<key>`; with `MegatronOptimizerCommon`'s common entries Megatron-LM
/// resumes from it, else `args.no_save_optim` is set and Megatron-LM starts its own optimizer), which resumes here
/// exactly. A checkpoint Megatron-LM wrote gives weights, iteration, consumed samples, the model description and,
/// where its layout is read, optimizer and scheduler state (`MegatronOptimizerState`); its RNG state is not carried.
///
/// ```swift
/// try MegatronCheckpointFormat.save(to: store, iteration: 100, model: model.stateDict(), optimizer: [:], manifest: manifest)
/// let loaded = try store.loadLatest()   // reads torch_dist, torch and safetensors checkpoints alike
/// ```
public enum MegatronCheckpointFormat {
    /// Where a torch_dist checkpoint written here keeps its manifest (metadata.json belongs to Megatron's format).
    public static let manifestKey = "megatron_swift_metadata"
    static let optimizerPrefix = "optimizer.state."
    /// What builds before the fully reshardable naming called the masters.
    static let legacyMasterName = "fp32_param"

    /// Writes `model` (our parameter names, whole) and `optimizer` (`master.<p>`, `state<k>.<p>`) for `iteration`
    /// as a torch_dist checkpoint, staged, renamed into place and then named by the tracker. `stateNames` names the
    /// optimizer's state buffers in Megatron's terms (`exp_avg`, `exp_avg_sq` for Adam).
    public static func save(to store: CheckpointDirectory, iteration: Int, model: [String: Tensor], optimizer: [String: Tensor],
                            stateNames: [String] = ["exp_avg", "exp_avg_sq"], manifest: CheckpointManifest,
                            megatronArgs: [(String, PickleValue)] = [], megatronCommon: [(String, PickleValue)] = [],
                            release: Bool = false) throws {
        guard let config = manifest.modelConfig else { throw CheckpointError("a torch_dist checkpoint needs the model's description") }
        let fm = FileManager.default
        try fm.createDirectory(at: store.root, withIntermediateDirectories: true)
        let name = release ? CheckpointDirectory.releaseName : CheckpointDirectory.iterationName(iteration)
        let staging = store.root.appendingPathComponent(CheckpointDirectory.stagingName(name))
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: false)

        var manifest = manifest
        manifest.iteration = iteration
        manifest.checkpointVersion = 3.0
        let experts = config.moe?.numExperts
        var tensors = try MegatronGPTLayout.sharded(model.mapValues { $0.to(.cpu) }, numLayers: config.numLayers, numExperts: experts)
        var optimizer = optimizer
        if !optimizer.isEmpty {
            // The layout holds every parameter's fp32 main copy; an fp32 parameter's is itself.
            for (name, p) in model where p.dtype == .float32 && optimizer["master." + name] == nil { optimizer["master." + name] = p }
        }
        for (kind, state) in try optimizerGroups(optimizer, stateNames: stateNames) {
            for (key, t) in try MegatronGPTLayout.sharded(state.mapValues { $0.to(.cpu) }, numLayers: config.numLayers, numExperts: experts,
                                                          aliases: false) {
                tensors[optimizerPrefix + kind + "." + key] = t
            }
        }
        try DistributedCheckpoint.write(.init(tensors: tensors, objects: MegatronGPTLayout.extraStateObjects(config),
                                              common: try commonState(manifest, megatronArgs: megatronArgs,
                                                                      megatronCommon: megatronCommon)), to: staging)
        try AtomicFile.syncDirectory(staging)
        try store.publish(staging, as: name)
        try AtomicFile.write(Data((release ? CheckpointDirectory.releaseName : "\(iteration)").utf8),
                             to: store.root.appendingPathComponent(CheckpointDirectory.trackerName))
    }

    /// The non-sharded state Megatron-LM reads (`args`, iteration, version, FLOPs so far, then `megatronCommon`: its
    /// optimizer's and scheduler's) and this build's manifest (iteration and version set).
    static func commonState(_ manifest: CheckpointManifest, megatronArgs: [(String, PickleValue)],
                            megatronCommon: [(String, PickleValue)] = []) throws -> PickleValue {
        let metadata = String(decoding: try CheckpointMetadata.encode(manifest), as: UTF8.self)
        return .stringDict([
            ("args", MegatronArgs.namespace(manifest, extra: megatronArgs)), ("checkpoint_version", .float(3.0)),
            ("iteration", .int(manifest.iteration ?? 0)),
            ("num_floating_point_operations_so_far", .float(manifest.numFloatingPointOperationsSoFar ?? 0)),
            (manifestKey, .string(metadata)),
        ] + megatronCommon)
    }

    /// The optimizer tensors grouped by Megatron's state name: `param` (fp32 main parameters), then the state buffers.
    static func optimizerGroups(_ optimizer: [String: Tensor], stateNames: [String]) throws -> [String: [String: Tensor]] {
        var groups: [String: [String: Tensor]] = [:]
        for (key, t) in optimizer {
            guard let dot = key.firstIndex(of: ".") else { throw CheckpointError("optimizer state \(key) has no parameter name") }
            let (kind, parameter) = (String(key[..<dot]), String(key[key.index(after: dot)...]))
            groups[megatronStateName(kind, stateNames), default: [:]][parameter] = t
        }
        return groups
    }

    static func megatronStateName(_ kind: String, _ stateNames: [String]) -> String {
        if kind == "master" { return "param" }
        if kind.hasPrefix("state"), let k = Int(kind.dropFirst(5)), stateNames.indices.contains(k) { return stateNames[k] }
        return kind
    }

    // MARK: Read

    /// The checkpoint in `directory` if it is one of Megatron's formats (nil for this build's safetensors layout).
    public static func loadIfMegatron(_ name: CheckpointName, from directory: URL, stateNames: [String] = ["exp_avg", "exp_avg_sq"])
        throws -> LoadedCheckpoint? {
        if DistributedCheckpoint.isDistributedCheckpoint(directory) {
            return try loadDistributed(name, from: directory, stateNames: stateNames)
        }
        guard let ranks = try LegacyTorchCheckpoint.rankFiles(in: directory) else { return nil }
        return try loadLegacy(name, ranks: ranks, directory: directory, stateNames: stateNames)
    }

    static func loadDistributed(_ name: CheckpointName, from directory: URL, stateNames: [String]) throws -> LoadedCheckpoint {
        let contents = try DistributedCheckpoint.read(directory)
        var tensors: [String: Tensor] = [:]
        var model: [String: Tensor] = [:]
        for (key, t) in contents.tensors where !key.hasPrefix("optimizer.") { model[key] = t }
        for (n, t) in MegatronGPTLayout.unsharded(model) { tensors["model." + n] = t }
        let metadataURL = directory.appendingPathComponent(".metadata")
        if let ours = contents.common[manifestKey]?.stringValue {
            var optimizer: [String: [String: Tensor]] = [:]
            for (key, t) in contents.tensors where key.hasPrefix(optimizerPrefix) {
                let rest = key.dropFirst(optimizerPrefix.count)
                guard let dot = rest.firstIndex(of: ".") else { continue }
                optimizer[String(rest[..<dot]), default: [:]][String(rest[rest.index(after: dot)...])] = t
            }
            let kinds = ["master"] + stateNames.indices.map { "state\($0)" }
            for (megatronKind, state) in optimizer {
                // Earlier builds named the masters `fp32_param`.
                let kind = megatronKind == legacyMasterName ? "master"
                    : kinds.first { megatronStateName($0, stateNames) == megatronKind } ?? megatronKind
                for (n, t) in MegatronGPTLayout.unsharded(state) {
                    // An fp32 parameter is its own master: the optimizer keeps none.
                    if kind == "master", tensors["model." + n]?.dtype == .float32 { continue }
                    tensors["optimizer.\(kind).\(n)"] = t
                }
            }
            let metadata = try CheckpointMetadata.decode(Data(ours.utf8), file: metadataURL)
            return LoadedCheckpoint(name: name, directory: directory, tensors: tensors, metadata: metadata)
        }
        let reader = try DistributedCheckpointReader(directory: directory)
        let parameters = tensors.map { (String($0.key.dropFirst(6)), $0.value.shape) }
        let lowPrecision = model.values.contains { $0.dtype != .float32 }
        let optimizer = MegatronOptimizerState.fromDistributed(contents, reader: reader, parameters: parameters,
                                                                   lowPrecision: lowPrecision, stateNames: stateNames)
        return try foreign(name, directory: directory, tensors: tensors, common: contents.common, optimizer: optimizer,
                           format: "torch_dist", file: metadataURL)
    }

    /// A legacy `torch` checkpoint (`LegacyTorchCheckpoint`, `ranks[stage][tensorRank]`), with its optimizer state
    /// when it is one rank's: the state of several model-parallel ranks numbers each rank's parameters (its slices) on
    /// its own.
    static func loadLegacy(_ name: CheckpointName, ranks: [[URL]], directory: URL, stateNames: [String]) throws -> LoadedCheckpoint {
        let (tensors, common) = try LegacyTorchCheckpoint.read(ranks)
        var optimizer = MegatronOptimizerState.Carried()
        let (stages, tensorSize) = (ranks.count, ranks[0].count)
        if stages == 1, tensorSize == 1, let model = common["model"] {
            // The model dict keeps Megatron's registration order, which the optimizer's parameter ids follow.
            let order = (model.pairs ?? []).compactMap { $0.key.stringValue }.compactMap { key in
                tensors["model." + key].map { (key, $0.shape) }
            }
            optimizer = MegatronOptimizerState.fromLegacy(common, modelOrder: order, stateNames: stateNames)
        } else if common["optimizer"] != nil {
            optimizer.notCarried = "its optimizer state is kept per model-parallel rank (\(tensorSize) tensor-parallel x \(stages) "
                + "pipeline ranks), which this build does not read"
        }
        return try foreign(name, directory: directory, tensors: tensors, common: common, optimizer: optimizer, format: "torch",
                           file: ranks[0][0])
    }

    /// A checkpoint Megatron-LM wrote: its manifest rebuilt from `args`, marked foreign (its RNG state is not looked
    /// for), with the optimizer state, step count and scheduler its layout gave.
    static func foreign(_ name: CheckpointName, directory: URL, tensors: [String: Tensor], common: PickleValue,
                        optimizer: MegatronOptimizerState.Carried, format: String, file: URL) throws -> LoadedCheckpoint {
        guard let args = common["args"] else { throw CheckpointError("\(file.path): holds no args") }
        var manifest = try MegatronArgs.manifest(args, source: file.path)
        manifest.iteration = common["iteration"]?.intValue ?? name.iteration
        manifest.checkpointVersion = common["checkpoint_version"]?.doubleValue ?? 3.0
        manifest.numFloatingPointOperationsSoFar = common["num_floating_point_operations_so_far"]?.doubleValue
        let carried = optimizer.notCarried == nil && !optimizer.tensors.isEmpty
        if carried {
            manifest.optimizerSteps = optimizer.steps
            manifest.optParamScheduler = optimizer.scheduler
            manifest.gradScaler = optimizer.gradScaler
        }
        let all = carried ? tensors.merging(optimizer.tensors) { a, _ in a } : tensors
        manifest.shapes = all.mapValues(\.shape)
        let metadata = try CheckpointMetadata.decode(try CheckpointMetadata.encode(manifest), file: file)
        var loaded = LoadedCheckpoint(name: name, directory: directory, tensors: all, metadata: metadata)
        loaded.writtenByMegatron = format
        loaded.optimizerNotCarried = optimizer.notCarried
        return loaded
    }
}
