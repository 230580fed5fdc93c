import Foundation
import MegatronTensor

/// Megatron-LM's legacy `torch` checkpoint format (`--ckpt-format torch`): one `torch.save` file per model-parallel
/// rank, `mp_rank_TT/model_optim_rng.pt`, or `mp_rank_TT_PPP/model_optim_rng.pt` under pipeline parallelism (PPP the
/// pipeline rank; Megatron's `checkpointing.get_checkpoint_name`). Tensor-parallel size 1 is read, any pipeline size.
///
/// A stage's `model` (with virtual pipeline stages: `model0`, `model1`, ..., one per model chunk) numbers its
/// transformer layers from 0 (they are its `TransformerBlock.layers`), so the chunks are joined in the model's order
/// (chunk 0 of every stage in pipeline order, then chunk 1, ...: Megatron's layer placement) with each one's layers
/// renumbered after the layers of those before it; with tied embeddings the last chunk's copy of the word embeddings
/// (`output_layer.weight`, which Megatron keeps equal to the first stage's) is left out, as in a checkpoint of one
/// stage.
enum LegacyTorchCheckpoint {
    static let fileName = "model_optim_rng.pt"

    /// The files of the legacy checkpoint in `directory`, one per pipeline stage in pipeline order; nil when the
    /// directory holds none.
    static func stageFiles(in directory: URL) throws -> [URL]? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let ranks = names.filter { $0.hasPrefix("mp_rank_") }.sorted()
        guard !ranks.isEmpty else { return nil }
        let stages = ranks == ["mp_rank_00"] ? ranks : (0..<ranks.count).map { String(format: "mp_rank_00_%03d", $0) }
        guard ranks == stages else {
            throw CheckpointError("\(directory.path): a legacy torch checkpoint of the model-parallel ranks \(ranks.joined(separator: ", ")); "
                + "this build reads tensor-parallel size 1 (mp_rank_00, or mp_rank_00_000, mp_rank_00_001, ... for pipeline stages): "
                + "convert it with Megatron-LM's tools/checkpoint/convert.py --target-tensor-parallel-size 1 first")
        }
        return stages.map { directory.appendingPathComponent($0).appendingPathComponent(fileName) }
    }

    /// The whole model (`model.` and our names, layers numbered over the whole model) and the first stage's
    /// non-model state (args, iteration...).
    static func read(_ files: [URL]) throws -> (tensors: [String: Tensor], common: PickleValue) {
        var stages: [[[String: Tensor]]] = []
        var common: PickleValue?
        for file in files {
            let state = try TorchSave.read(Data(contentsOf: file, options: .alwaysMapped), source: file.path)
            if common == nil {
                try checkPipelineSize(state, stages: files.count, file: file)
                common = state
            }
            stages.append(try modelChunks(state, file: file))
        }
        let chunks = stages[0].count
        guard stages.allSatisfy({ $0.count == chunks }) else {
            throw CheckpointError("\(files[0].path): its stages hold \(stages.map(\.count)) model chunks, not the same number")
        }
        let tied = files.count > 1 && !(common?["args"]?.attribute("untie_embeddings_and_output_weights")?.boolValue ?? false)
        var tensors: [String: Tensor] = [:]
        var layersBefore = 0
        for chunk in 0..<chunks {
            for (stage, local) in stages.map({ $0[chunk] }).enumerated() {
                let holdsTiedCopy = tied && stage == files.count - 1 && chunk == chunks - 1
                for (name, t) in local where !(holdsTiedCopy && name == "output_layer.weight") {
                    tensors["model." + renumbered(name, after: layersBefore)] = t
                }
                layersBefore += try layerCount(local, file: files[stage])
            }
        }
        if let layers = common?["args"]?.attribute("num_layers")?.intValue, layers != layersBefore {
            throw CheckpointError("\(files[0].path): its \(files.count) stage(s) hold \(layersBefore) transformer layers, "
                + "its args.num_layers says \(layers)")
        }
        return (tensors, common!)
    }

    /// A stage file's model chunks: `model`, or `model0`, `model1`, ... with virtual pipeline stages.
    static func modelChunks(_ state: PickleValue, file: URL) throws -> [[String: Tensor]] {
        if let model = state["model"] { return [try MegatronGPTLayout.legacyModel(model, source: file.path)] }
        var chunks: [[String: Tensor]] = []
        while let model = state["model\(chunks.count)"] {
            chunks.append(try MegatronGPTLayout.legacyModel(model, source: "\(file.path) (model\(chunks.count))"))
        }
        guard !chunks.isEmpty else { throw CheckpointError("\(file.path): holds no 'model' (nor 'model0', 'model1', ... of model chunks)") }
        return chunks
    }

    /// Directories `mp_rank_00_XXX` are pipeline stages only when args say so: Megatron names expert-parallel
    /// ranks the same way without pipelining.
    static func checkPipelineSize(_ state: PickleValue, stages: Int, file: URL) throws {
        let pipeline = state["args"]?.attribute("pipeline_model_parallel_size")?.intValue ?? 1
        let experts = state["args"]?.attribute("expert_model_parallel_size")?.intValue ?? 1
        guard pipeline == stages, experts == 1 else {
            throw CheckpointError("\(file.path): args.pipeline_model_parallel_size \(pipeline) and expert_model_parallel_size \(experts) "
                + "do not describe its \(stages) rank file(s); this build reads legacy torch checkpoints of pipeline stages, "
                + "without expert parallelism")
        }
    }

    /// How many transformer layers a stage holds; its layer numbers must be 0, 1, ... without gaps.
    static func layerCount(_ stage: [String: Tensor], file: URL) throws -> Int {
        let numbers = Set(stage.keys.compactMap { MegatronGPTLayout.splitLayer($0)?.0 })
        guard numbers == Set(0..<numbers.count) else {
            throw CheckpointError("\(file.path): its transformer layers are numbered \(numbers.sorted()), not 0..<\(numbers.count)")
        }
        return numbers.count
    }

    /// `decoder.layers.<i>.rest` as `decoder.layers.<i + offset>.rest`; other names unchanged.
    static func renumbered(_ name: String, after offset: Int) -> String {
        guard offset > 0, let (layer, rest) = MegatronGPTLayout.splitLayer(name) else { return name }
        return "\(MegatronGPTLayout.layerPrefix)\(layer + offset).\(rest)"
    }
}
