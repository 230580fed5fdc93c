import Foundation
import MegatronTensor

/// Megatron-LM's legacy `torch` checkpoint format (`--ckpt-format torch`): one `torch.save` file per model-parallel
/// rank, `mp_rank_TT/model_optim_rng.pt`, or `mp_rank_TT_PPP/model_optim_rng.pt` under pipeline parallelism (TT the
/// tensor-parallel rank, PPP the pipeline rank; Megatron's `checkpointing.get_checkpoint_name`). Any tensor-parallel
/// and pipeline size is read, without expert parallelism.
///
/// A stage's `model` (with virtual pipeline stages: `model0`, `model1`, ..., one per model chunk) numbers its
/// transformer layers from 0 (they are its `TransformerBlock.layers`), so the chunks are joined in the model's order
/// (chunk 0 of every stage in pipeline order, then chunk 1, ...: Megatron's layer placement) with each one's layers
/// renumbered after the layers of those before it; with tied embeddings the last chunk's copy of the word embeddings
/// (`output_layer.weight`, which Megatron keeps equal to the first stage's) is left out, as in a checkpoint of one
/// stage. A stage's tensor-parallel ranks are joined first, by each parameter's `TensorParallelSharding` (the
/// modules' own table): Megatron holds on rank r the r-th block of a column-parallel weight's rows (its own query
/// groups of the fused QKV, its vocabulary rows, SwiGLU's gate and up blocks as `[gate_r; up_r]`) and of a
/// row-parallel weight's columns, and every rank the whole of the rest (norms, row-parallel biases, positions).
enum LegacyTorchCheckpoint {
    static let fileName = "model_optim_rng.pt"
    static let rankPrefix = "mp_rank_"

    /// The rank files of the legacy checkpoint in `directory`, `files[stage][tensorRank]`; nil when the directory
    /// holds none. The rank directories must be a whole grid of tensor and pipeline ranks.
    static func rankFiles(in directory: URL) throws -> [[URL]]? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let ranks = names.filter { $0.hasPrefix(rankPrefix) }.sorted()
        guard !ranks.isEmpty else { return nil }
        let parsed = ranks.map { $0.dropFirst(rankPrefix.count).split(separator: "_").map { Int($0) } }
        let piped = parsed[0].count == 2
        guard parsed.allSatisfy({ $0.count == parsed[0].count && (1...2).contains($0.count) && !$0.contains(nil) }) else {
            throw CheckpointError("\(directory.path): legacy torch rank directories \(ranks.joined(separator: ", ")) are not all "
                + "mp_rank_TT (tensor rank) or all mp_rank_TT_PPP (tensor and pipeline rank)")
        }
        let tensorSize = parsed.map { $0[0]! }.max()! + 1
        let pipelineSize = piped ? parsed.map { $0[1]! }.max()! + 1 : 1
        let grid = (0..<pipelineSize).map { stage in
            (0..<tensorSize).map { tp in rankPrefix + String(format: "%02d", tp) + (piped ? String(format: "_%03d", stage) : "") }
        }
        let missing = Set(grid.joined()).subtracting(ranks).sorted()
        guard missing.isEmpty else {
            throw CheckpointError("\(directory.path): a legacy torch checkpoint of the rank directories \(ranks.joined(separator: ", ")) "
                + "lacks \(missing.joined(separator: ", ")) of its \(tensorSize) tensor-parallel x \(pipelineSize) pipeline ranks")
        }
        return grid.map { $0.map { directory.appendingPathComponent($0).appendingPathComponent(fileName) } }
    }

    /// The whole model (`model.` and our names, layers numbered over the whole model) and the first rank's
    /// non-model state (args, iteration...).
    static func read(_ files: [[URL]]) throws -> (tensors: [String: Tensor], common: PickleValue) {
        var stages: [[[[String: Tensor]]]] = []  // [stage][tensor rank][chunk]
        var common: PickleValue?
        var shardings: [String: TensorParallelSharding] = [:]
        for stageFiles in files {
            var ranks: [[[String: Tensor]]] = []
            for file in stageFiles {
                let state = try TorchSave.read(Data(contentsOf: file, options: .alwaysMapped), source: file.path)
                if common == nil {
                    try checkParallelSizes(state, tensor: stageFiles.count, pipeline: files.count, file: file)
                    if stageFiles.count > 1 { shardings = try tensorParallelShardings(state, file: file) }
                    common = state
                }
                ranks.append(try modelChunks(state, file: file))
            }
            stages.append(ranks)
        }
        let chunks = stages[0][0].count
        guard stages.joined().allSatisfy({ $0.count == chunks }) else {
            throw CheckpointError("\(files[0][0].path): its rank files hold \(stages.map { $0.map(\.count) }) model chunks, not the same number")
        }
        let tied = files.count > 1 && !(common?["args"]?.attribute("untie_embeddings_and_output_weights")?.boolValue ?? false)
        var tensors: [String: Tensor] = [:]
        var layersBefore = 0
        for chunk in 0..<chunks {
            for (stage, ranks) in stages.enumerated() {
                let holdsTiedCopy = tied && stage == files.count - 1 && chunk == chunks - 1
                let parts = ranks.map { $0[chunk].filter { !(holdsTiedCopy && $0.key == "output_layer.weight") } }
                let local = try joinTensorParallel(parts, shardings: shardings, files: files[stage])
                for (name, t) in local {
                    tensors["model." + renumbered(name, after: layersBefore)] = t
                }
                layersBefore += try layerCount(local, file: files[stage][0])
            }
        }
        if let layers = common?["args"]?.attribute("num_layers")?.intValue, layers != layersBefore {
            throw CheckpointError("\(files[0][0].path): its \(files.count) stage(s) hold \(layersBefore) transformer layers, "
                + "its args.num_layers says \(layers)")
        }
        return (tensors, common!)
    }

    /// One model chunk whole from its tensor-parallel ranks' parts (stage-local names), in rank order.
    static func joinTensorParallel(_ ranks: [[String: Tensor]], shardings: [String: TensorParallelSharding],
                                   files: [URL]) throws -> [String: Tensor] {
        guard ranks.count > 1 else { return ranks[0] }
        for (rank, tensors) in ranks.enumerated() where Set(tensors.keys) != Set(ranks[0].keys) {
            throw CheckpointError("\(files[rank].path): holds \(Set(tensors.keys).symmetricDifference(ranks[0].keys).sorted()) "
                + "where \(files[0].path) does not, or the reverse")
        }
        // Every layer of a dense model is laid out alike: the table holds layer 0's names.
        var byName: [String: TensorParallelSharding] = [:]
        for name in ranks[0].keys {
            byName[name] = shardings[MegatronGPTLayout.splitLayer(name).map { "\(MegatronGPTLayout.layerPrefix)0.\($0.1)" } ?? name]
        }
        do {
            return try TensorParallelResharding.merge(ranks, shardings: byName)
        } catch let error as ConfigError {
            throw CheckpointError("\(files.map(\.path).joined(separator: ", ")): joining the tensor-parallel ranks: \(error.description)")
        }
    }

    /// How the parameters of the model `state`'s args describe are split over tensor-parallel ranks, from a one-layer
    /// model of that description (the layout does not depend on the layer count or the group size).
    static func tensorParallelShardings(_ state: PickleValue, file: URL) throws -> [String: TensorParallelSharding] {
        guard let args = state["args"] else { throw CheckpointError("\(file.path): holds no args") }
        let manifest = try MegatronArgs.manifest(args, source: file.path)
        guard var config = manifest.modelConfig, config.moe == nil else {
            throw CheckpointError("\(file.path): a legacy torch checkpoint of a mixture-of-experts model split over tensor-parallel ranks; "
                + "this build joins the ranks of dense models: convert it with Megatron-LM's tools/checkpoint/convert.py "
                + "--target-tensor-parallel-size 1 first")
        }
        config.numLayers = 1
        do {
            let model = try GPTModel(config: config, vocabSize: manifest.paddedVocabSize ?? 0, maxSequenceLength: manifest.maxPositionEmbeddings ?? 0,
                                     untieEmbeddingsAndOutputWeights: manifest.untieEmbeddingsAndOutputWeights ?? false, tensorParallel: .single)
            return model.tensorParallelShardings()
        } catch let error as ConfigError {
            throw CheckpointError("\(file.path): args describe no model this build builds: \(error.description)")
        }
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

    /// Directories `mp_rank_TT_XXX` are pipeline stages only when args say so: Megatron names expert-parallel
    /// ranks the same way without pipelining.
    static func checkParallelSizes(_ state: PickleValue, tensor: Int, pipeline stages: Int, file: URL) throws {
        let tensorSize = state["args"]?.attribute("tensor_model_parallel_size")?.intValue ?? 1
        let pipeline = state["args"]?.attribute("pipeline_model_parallel_size")?.intValue ?? 1
        let experts = state["args"]?.attribute("expert_model_parallel_size")?.intValue ?? 1
        guard tensorSize == tensor, pipeline == stages, experts == 1 else {
            throw CheckpointError("\(file.path): args.tensor_model_parallel_size \(tensorSize), pipeline_model_parallel_size \(pipeline) "
                + "and expert_model_parallel_size \(experts) do not describe its rank files (\(tensor) tensor-parallel x \(stages) "
                + "pipeline ranks: mp_rank_TT or mp_rank_TT_PPP directories); this build reads legacy torch checkpoints of "
                + "tensor-parallel ranks and pipeline stages, without expert parallelism")
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
