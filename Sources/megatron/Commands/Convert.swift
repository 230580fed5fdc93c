import ArgumentParser
import Foundation
import MegatronCore

/// `megatron convert`: Megatron-LM's `tools/checkpoint/convert.py` for GPT models.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert GPT checkpoints between Hugging Face and Megatron layouts.",
        discussion: """
            --loader hf reads a Hugging Face directory (config.json and model.safetensors, or sharded with \
            model.safetensors.index.json) of GPT-2, LLaMA (2, 3.x with rope_scaling), Mistral, Qwen2, Qwen3, \
            Mixtral, Qwen2-MoE or Qwen3-MoE; \
            config.json fields that would change the model and are not supported are refused by name. \
            --saver megatron writes a release checkpoint that pretrain-gpt --load, generate and Megatron-LM read \
            (--ckpt-format torch_dist, the default; safetensors for this build's own layout), with the \
            directory's tokenizer files copied into its tokenizer/ folder; --loader megatron reads either, and \
            Megatron-LM's torch_dist and legacy torch checkpoints; --saver hf writes config.json and \
            model.safetensors in the architecture the model came from (else the one that holds it).
            """)

    enum Format: String, ExpressibleByArgument { case hf, megatron }

    @Option(help: "Model family (only GPT).") var modelType = "GPT"
    @Option(help: "Format of --load-dir: hf or megatron.") var loader: Format
    @Option(help: "Format of --save-dir: hf or megatron.") var saver: Format
    @Option(help: "Directory to read.") var loadDir: String
    @Option(help: "Directory to write.") var saveDir: String
    @Option(help: "Format --saver megatron writes: torch_dist (Megatron-LM's) or safetensors (this build's own).")
    var ckptFormat = "torch_dist"
    @Option(help: "Tensor-parallel size of the saved checkpoint (only 1 until tensor parallelism lands).")
    var targetTensorParallelSize = 1
    @Option(help: "Pipeline-parallel size of the saved checkpoint (only 1 until pipeline parallelism lands).")
    var targetPipelineParallelSize = 1

    func validate() throws {
        guard modelType == "GPT" else { throw ValidationError("--model-type \(modelType) is not supported; only GPT") }
        guard ["torch_dist", "safetensors"].contains(ckptFormat) else {
            throw ValidationError("--ckpt-format must be torch_dist or safetensors, got '\(ckptFormat)'")
        }
        guard targetTensorParallelSize == 1, targetPipelineParallelSize == 1 else {
            throw ValidationError("this build saves unsharded checkpoints only: --target-tensor-parallel-size and --target-pipeline-parallel-size must be 1")
        }
    }

    func run() throws {
        let source = URL(fileURLWithPath: loadDir), target = URL(fileURLWithPath: saveDir)
        let model: GPTModel, vocab: Int
        // What travels with the weights: the Hugging Face architecture and the tokenizer's files.
        var architecture: HuggingFaceGPT.Architecture?
        var tokenizerFolder: URL?
        var carried = CheckpointManifest()
        switch loader {
        case .hf:
            let loaded = try HuggingFaceGPT.load(directory: source)
            (model, vocab, architecture) = (loaded.model, loaded.vocabSize, loaded.architecture)
            tokenizerFolder = source
        case .megatron:
            let loaded = try GPTCheckpoint.load(from: CheckpointDirectory(root: source))
            (model, vocab) = (loaded.model, loaded.vocabSize)
            architecture = loaded.manifest.huggingfaceArchitecture.flatMap(HuggingFaceGPT.Architecture.init)
            tokenizerFolder = CheckpointTokenizer.huggingFaceFolder(recordedIn: loaded.manifest, root: source)
            carried.args = loaded.manifest.args
        }
        let parameters = model.namedParameters().map { $0.1.count }.reduce(0, +)
        print("> loaded \(parameters) parameters (\(model.config.numLayers) layers, vocabulary \(vocab)) from \(loadDir)")
        switch saver {
        case .hf:
            let written = try HuggingFaceGPT.save(model, vocabSize: vocab, to: target, preferring: architecture)
            let copied = try tokenizerFolder.map { try CheckpointTokenizer.copyHuggingFaceFiles(from: $0, to: target) } ?? false
            print("> saved hf checkpoint (\(written.modelClass)\(copied ? ", with its tokenizer" : "")) to \(saveDir)")
        case .megatron:
            if let tokenizerFolder,
               let record = try CheckpointTokenizer.recordHuggingFaceTokenizer(from: tokenizerFolder, checkpointRoot: target) {
                carried.tokenizer = record
                print("> copied the tokenizer into \(target.appendingPathComponent(CheckpointTokenizer.folderName).path)")
            } else if loader == .hf {
                print("> \(loadDir) has no tokenizer.json: generate will need the tokenizer flags")
            }
            carried.huggingfaceArchitecture = architecture?.rawValue
            try GPTCheckpoint.save(model, vocabSize: vocab, to: CheckpointDirectory(root: target), release: true, manifest: carried,
                                   torchDist: ckptFormat == "torch_dist")
            print("> saved megatron checkpoint (\(ckptFormat)) to \(saveDir)")
        }
    }
}
