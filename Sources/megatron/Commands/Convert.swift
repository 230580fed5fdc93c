import ArgumentParser
import Foundation
import MegatronCore

/// `megatron convert`: Megatron-LM's `tools/checkpoint/convert.py` for GPT models.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert GPT checkpoints between Hugging Face and Megatron layouts.",
        discussion: """
            --loader hf reads a Hugging Face directory (config.json and model.safetensors, or sharded with \
            model.safetensors.index.json; GPT-2 and LLaMA / Mistral / Qwen-2 architectures). --saver megatron \
            writes a release checkpoint that pretrain-gpt --load reads; --saver hf writes config.json and \
            model.safetensors.
            """)

    enum Format: String, ExpressibleByArgument { case hf, megatron }

    @Option(help: "Model family (only GPT).") var modelType = "GPT"
    @Option(help: "Format of --load-dir: hf or megatron.") var loader: Format
    @Option(help: "Format of --save-dir: hf or megatron.") var saver: Format
    @Option(help: "Directory to read.") var loadDir: String
    @Option(help: "Directory to write.") var saveDir: String
    @Option(help: "Tensor-parallel size of the saved checkpoint (only 1 until tensor parallelism lands).")
    var targetTensorParallelSize = 1
    @Option(help: "Pipeline-parallel size of the saved checkpoint (only 1 until pipeline parallelism lands).")
    var targetPipelineParallelSize = 1

    func validate() throws {
        guard modelType == "GPT" else { throw ValidationError("--model-type \(modelType) is not supported; only GPT") }
        guard targetTensorParallelSize == 1, targetPipelineParallelSize == 1 else {
            throw ValidationError("this build saves unsharded checkpoints only: --target-tensor-parallel-size and --target-pipeline-parallel-size must be 1")
        }
    }

    func run() throws {
        let source = URL(fileURLWithPath: loadDir), target = URL(fileURLWithPath: saveDir)
        let (model, vocab): (GPTModel, Int)
        switch loader {
        case .hf:
            let loaded = try HuggingFaceGPT.load(directory: source)
            (model, vocab) = (loaded.model, loaded.vocabSize)
        case .megatron:
            (model, vocab) = try GPTCheckpoint.load(from: CheckpointDirectory(root: source))
        }
        let parameters = model.namedParameters().map { $0.1.count }.reduce(0, +)
        print("> loaded \(parameters) parameters (\(model.config.numLayers) layers, vocabulary \(vocab)) from \(loadDir)")
        switch saver {
        case .hf: try HuggingFaceGPT.save(model, vocabSize: vocab, to: target)
        case .megatron: try GPTCheckpoint.save(model, vocabSize: vocab, to: CheckpointDirectory(root: target), release: true)
        }
        print("> saved \(saver.rawValue) checkpoint to \(saveDir)")
    }
}
