import Foundation
import MegatronTensor

/// The optimizer state of a checkpoint Megatron-LM wrote, in this build's names: `state<k>.<param>` for the
/// optimizer's buffers (Adam's `exp_avg`, `exp_avg_sq`), `master.<param>` for the fp32 copy of a bf16 / fp16
/// parameter, with the optimizer's step count and the scheduler's state.
///
/// Layouts read (each checked against a Megatron-LM run that resumed from it, `make_megatron_checkpoints.py resume`,
/// in fp32 and with `--bf16`, whose fp32 main copies are the `param` / `fp32_param` entries):
/// * torch_dist, distributed optimizer, `fully_reshardable`: `optimizer.state.<param|exp_avg|exp_avg_sq>.<key>`, the
///   model tensor's own layout, and the step in the common state's `param_groups`;
/// * torch_dist, plain optimizer: `optimizer.state.<exp_avg|exp_avg_sq|fp32_param>.<key>` and `common_step` (under
///   `optimizer` when bf16 / fp16);
/// * torch_dist, distributed optimizer, `dp_reshardable` (Megatron's default): one flat tensor per gradient bucket,
///   the parameters in the reverse of the model's registration order, each starting on a 64-element boundary; the
///   order is checked against the chunks the checkpoint records for each parameter;
/// * legacy torch, plain optimizer: torch's optimizer state dict, whose parameter ids follow the param groups.
///
/// Not read, with the reason recorded (`Carried.notCarried`): a `dp_reshardable` state of a model-parallel run (one
/// flat tensor per model-parallel rank), one of several gradient buffers (MoE experts, mixed dtypes), the legacy
/// distributed optimizer's `distrib_optim.pt`, and any other layout. The fp16 dynamic loss scaler's state
/// (`grad_scaler`) is carried with the rest; Megatron's RNG state never is (its generators are not this build's).
enum MegatronOptimizerState {
    struct Carried {
        /// `optimizer.state<k>.<param>`, `optimizer.master.<param>`.
        var tensors: [String: Tensor] = [:]
        var steps: Int?
        var scheduler: OptimizerParamScheduler.State?
        /// The fp16 dynamic loss scaler's scale and trackers (`grad_scaler`); nil without one.
        var gradScaler: DynamicGradScaler.State?
        /// Why the checkpoint's optimizer state cannot be resumed from, when it holds some.
        var notCarried: String?
    }

    static let modelSpacePrefix = "optimizer.state."
    static let bucketPrefix = "optimizer.distributed."

    /// The optimizer state of a torch_dist checkpoint Megatron-LM wrote. `parameters`: our names and shapes of the
    /// model's parameters; `lowPrecision`: whether they are bf16 / fp16 (so that the fp32 copies are kept).
    static func fromDistributed(_ contents: DistributedCheckpoint.Contents, reader: DistributedCheckpointReader,
                                parameters: [(String, [Int])], lowPrecision: Bool, stateNames: [String]) -> Carried {
        var carried = Carried()
        guard let optimizer = contents.common["optimizer"] else { return carried }
        do {
            carried.scheduler = try scheduler(contents.common["opt_param_scheduler"])
            try readDistributed(optimizer, contents, reader, parameters: parameters, lowPrecision: lowPrecision, stateNames: stateNames,
                                into: &carried)
        } catch let why as NotCarried {
            carried.notCarried = "its optimizer state \(why.reason)"
        } catch {
            carried.notCarried = "its optimizer state could not be read: \(error)"
        }
        if carried.notCarried == nil, carried.steps == nil { carried.notCarried = "its optimizer state records no step count" }
        return carried
    }

    /// The layouts of `fromDistributed`, named by the common state's `param_state_sharding_type`.
    static func readDistributed(_ optimizer: PickleValue, _ contents: DistributedCheckpoint.Contents, _ reader: DistributedCheckpointReader,
                                parameters: [(String, [Int])], lowPrecision: Bool, stateNames: [String], into carried: inout Carried) throws {
        let sharding = optimizer["param_state_sharding_type"]?.stringValue
        switch sharding {
        case nil, "fully_reshardable":
            var byKind: [String: [String: Tensor]] = [:]
            for (key, t) in contents.tensors where key.hasPrefix(modelSpacePrefix) {
                let rest = key.dropFirst(modelSpacePrefix.count)
                guard let dot = rest.firstIndex(of: ".") else { continue }
                byKind[String(rest[..<dot]), default: [:]][String(rest[rest.index(after: dot)...])] = t
            }
            for (kind, state) in byKind {
                for (name, t) in MegatronGPTLayout.unsharded(state) {
                    if let ours = ourName(kind, stateNames, lowPrecision: lowPrecision) { carried.tensors["optimizer.\(ours).\(name)"] = t }
                }
            }
            // The plain fp32 optimizer's state dict is torch's; the bf16 / fp16 one keeps torch's under `optimizer`
            // (beside the main copies); the distributed optimizer keeps the step in its param groups.
            let inner = optimizer["optimizer"]
            carried.steps = count(optimizer["state"]?["common_step"]) ?? count(inner?["state"]?["common_step"])
                ?? groupStep(inner?["param_groups"])
            carried.gradScaler = try gradScaler(optimizer["grad_scaler"])
        case "dp_reshardable":
            carried.tensors = try bucketState(reader, parameters: parameters, contents: contents, lowPrecision: lowPrecision,
                                              stateNames: stateNames)
            carried.steps = groupStep(try reader.object("\(bucketPrefix)dp_group_idx_0.optimizer/shard_0_1")[0]?["param_groups"])
            // Each entry of the optimizer's state dict is its own object in this layout.
            let scaler = "\(bucketPrefix)dp_group_idx_0.grad_scaler/shard_0_1"
            if reader.objectKeys.contains(scaler) { carried.gradScaler = try gradScaler(try reader.object(scaler)[0]) }
        default:
            throw NotCarried("is in the distributed optimizer's \(sharding!) layout, which this build does not read")
        }
    }

    /// The optimizer state of a legacy torch checkpoint (`model_optim_rng.pt`): torch's optimizer state dict (inside
    /// `optimizer`, or `optimizer.optimizer` with fp32 copies in `fp32_from_fp16_params` for bf16 / fp16), its
    /// parameter ids following the param groups, each group holding the model's parameters with (`wd_mult` > 0) or
    /// without weight decay, in the model's order (`modelOrder`: the checkpoint's own).
    static func fromLegacy(_ state: PickleValue, modelOrder: [(String, [Int])], stateNames: [String]) -> Carried {
        var carried = Carried()
        guard let optimizer = state["optimizer"] else { return carried }
        guard optimizer["param_state_sharding_type"] == nil, optimizer["param_groups"] != nil || optimizer["optimizer"]?["param_groups"] != nil else {
            carried.notCarried = "its distributed optimizer state lies in distrib_optim.pt, which this build does not read"
            return carried
        }
        let inner = optimizer["param_groups"] != nil ? optimizer : optimizer["optimizer"]!
        do {
            carried.scheduler = try scheduler(state["opt_param_scheduler"])
            let groups = try legacyGroups(inner["param_groups"], modelOrder: modelOrder)
            for (g, members) in groups.enumerated() {
                for (i, (id, name, shape)) in members.enumerated() {
                    guard let entry = inner["state"]?.pairs?.first(where: { $0.key.intValue == id })?.value else { continue }
                    for (k, stateName) in stateNames.enumerated() {
                        guard let t = entry[stateName]?.tensorValue else { continue }
                        guard t.shape == shape else { throw NotCarried("\(stateName) of \(name) is \(t.shape), the parameter \(shape)") }
                        carried.tensors["optimizer.state\(k).\(name)"] = t
                    }
                    carried.steps = carried.steps ?? count(entry["step"])
                    if let master = optimizer["fp32_from_fp16_params"]?[g]?[i]?.tensorValue { carried.tensors["optimizer.master.\(name)"] = master }
                }
            }
            carried.steps = carried.steps ?? groupStep(inner["param_groups"])
            carried.gradScaler = try gradScaler(optimizer["grad_scaler"])
        } catch let why as NotCarried {
            carried.notCarried = "its optimizer state \(why.reason)"
        } catch {
            carried.notCarried = "its optimizer state could not be read: \(error)"
        }
        return carried
    }

    struct NotCarried: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Our optimizer key for Megatron's state `kind`; nil for the fp32 copy of an fp32 parameter (the parameter).
    static func ourName(_ kind: String, _ stateNames: [String], lowPrecision: Bool) -> String? {
        if kind == "param" || kind == "fp32_param" { return lowPrecision ? "master" : nil }
        return stateNames.firstIndex(of: kind).map { "state\($0)" }
    }

    /// A count saved as a number or a one-element tensor: Adam's per-parameter `step`, MCore's `common_step`, the
    /// loss scaler's trackers.
    static func count(_ value: PickleValue?) -> Int? {
        if let t = value?.tensorValue, t.count == 1 { return Int(t.to(.cpu).cast(to: .float32).floats()[0]) }
        return value?.doubleValue.map { Int($0) }
    }

    /// The step every param group records (Megatron keeps it there for Adam).
    static func groupStep(_ groups: PickleValue?) -> Int? {
        let steps = Set((groups?.elements ?? []).compactMap { count($0["step"]) })
        return steps.count == 1 ? steps.first : nil
    }

    /// Megatron's `DynamicGradScaler` state dict (`scale`, a one-element tensor, and the trackers); nil when absent or
    /// empty (a constant scaler's).
    static func gradScaler(_ value: PickleValue?) throws -> DynamicGradScaler.State? {
        guard let value, value.pairs?.isEmpty == false else { return nil }
        guard let scale = value["scale"]?.tensorValue, scale.count == 1, let growth = count(value["growth_tracker"]),
              let hysteresis = count(value["hysteresis_tracker"])
        else { throw NotCarried("has a grad_scaler without a one-element scale and integer trackers") }
        return DynamicGradScaler.State(scale: scale.to(.cpu).cast(to: .float32).floats()[0], growthTracker: growth, hysteresisTracker: hysteresis)
    }

    /// Megatron's `opt_param_scheduler` state dict, whose keys are `State`'s.
    static func scheduler(_ value: PickleValue?) throws -> OptimizerParamScheduler.State? {
        guard let pairs = value?.pairs else { return nil }
        var json: [String: Any] = [:]
        for pair in pairs {
            guard let key = pair.key.stringValue else { continue }
            json[key] = pair.value.intValue.map { $0 as Any } ?? pair.value.doubleValue ?? pair.value.stringValue
        }
        do {
            return try JSONDecoder().decode(OptimizerParamScheduler.State.self, from: try JSONSerialization.data(withJSONObject: json))
        } catch {
            throw CheckpointError("opt_param_scheduler: \(error)")
        }
    }
}
