/// Megatron's start-up dump of every argument (`arguments.py: _print_args`): a title line, one
/// `  name ...... value` line per argument (the name padded with dots to 48 columns, the value as Python's
/// `str()`), sorted case-insensitively, and a closing line.
///
/// Names are Megatron's `dest` names, derived from `PretrainArguments`' properties (`minLR` -> `min_lr`);
/// sizes Megatron fills in during `validate_args` (`ffn_hidden_size`, `kv_channels`, `global_batch_size`) are
/// printed resolved, and the world's numbers are added as Megatron adds them.
///
/// ```swift
/// for line in ArgumentsDump(arguments, world: .single).lines() { print(line) }
/// // ------------------------ arguments ------------------------
/// //   adam_beta1 ...................................... 0.9
/// //   ...
/// // -------------------- end of arguments ---------------------
/// ```
struct ArgumentsDump {
    /// Where the printing rank stands in the job.
    struct World {
        var rank = 0
        var size = 1
        var dataParallelSize = 1

        static let single = World()
    }

    /// Megatron name to printed value.
    private(set) var values: [String: String] = [:]

    init(_ arguments: PretrainArguments, world: World) {
        for child in Mirror(reflecting: arguments).children {
            guard let label = child.label else { continue }
            values[Self.megatronName(label)] = PythonText.value(child.value)
        }
        if let config = try? arguments.transformerConfig() {
            values["ffn_hidden_size"] = String(config.ffnHiddenSize)
            values["kv_channels"] = String(config.kvChannels)
        }
        values["global_batch_size"] = String(arguments.globalBatchSize ?? arguments.microBatchSize * world.dataParallelSize)
        values["rank"] = String(world.rank)
        values["world_size"] = String(world.size)
        values["data_parallel_size"] = String(world.dataParallelSize)
        values["params_dtype"] = arguments.bf16 ? "torch.bfloat16" : (arguments.fp16 ? "torch.float16" : "torch.float32")
        values["consumed_train_samples"] = "0"
        values["consumed_valid_samples"] = "0"
    }

    /// The printed lines, title and closing line included.
    func lines(title: String = "arguments") -> [String] {
        let body = values.map { name, value in
            "  \(name) \(String(repeating: ".", count: max(0, 48 - name.count))) \(value)"
        }
        // Python sorts the lines by their lower-cased text (Swift orders ASCII text by code point too).
        let sorted = body.sorted { $0.lowercased() < $1.lowercased() }
        return ["------------------------ \(title) ------------------------"] + sorted
            + ["-------------------- end of \(title) ---------------------"]
    }

    /// A property name in Megatron's snake case: a word starts at each capital after a lower-case letter or a
    /// digit, and at the last capital of an acronym followed by lower case (`addQKVBias` -> `add_qkv_bias`).
    static func megatronName(_ property: String) -> String {
        let characters = Array(property)
        var name = ""
        for (i, c) in characters.enumerated() {
            if c.isUppercase, i > 0 {
                let previous = characters[i - 1]
                let next = i + 1 < characters.count ? characters[i + 1] : nil
                if previous.isLowercase || previous.isNumber || (previous.isUppercase && next?.isLowercase == true) {
                    name.append("_")
                }
            }
            name.append(contentsOf: c.lowercased())
        }
        return name
    }
}
