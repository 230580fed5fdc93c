import MegatronCore

extension FP8Recipe.Format: FlagChoice {}
extension FP8Recipe.Scaling: FlagChoice {}
extension FP8Recipe.AmaxComputeAlgo: FlagChoice {}

extension PretrainFlags {
    /// The `--fp8-*` flags this build implements (the FP8 recipe of Transformer Engine that Megatron configures).
    static let fp8: [Flag] = [
        .choice("--fp8-format", \.fp8Format, FP8Recipe.Format.allCases),
        Flag(name: "--fp8-recipe", takesValue: true, apply: { args, value in
            args.fp8Recipe = try fp8Scaling(value!)
        }, metavar: "delayed|tensorwise", defaultText: { $0.fp8Recipe.rawValue }),
        .int("--fp8-margin", \.fp8Margin),
        .int("--fp8-amax-history-len", \.fp8AmaxHistoryLen),
        .choice("--fp8-amax-compute-algo", \.fp8AmaxComputeAlgo, FP8Recipe.AmaxComputeAlgo.allCases),
        .set("--no-fp8-wgrad", \.fp8Wgrad, to: false),
        .set("--first-last-layers-bf16", \.firstLastLayersBF16),
        .int("--num-layers-at-start-in-bf16", \.numLayersAtStartInBF16),
        .int("--num-layers-at-end-in-bf16", \.numLayersAtEndInBF16),
    ]

    /// `--fp8-recipe`: Megatron's block-scaled recipes are refused by name with what they need.
    private static func fp8Scaling(_ value: String) throws -> FP8Recipe.Scaling {
        switch value {
        case "mxfp8":
            throw UnsupportedFeature(feature: "FP8 MXFP8 block scaling (needs Blackwell's block-scaled tensor cores; "
                                     + "use --fp8-recipe delayed or tensorwise)", usage: "--fp8-recipe mxfp8")
        case "blockwise":
            throw UnsupportedFeature(feature: "FP8 blockwise scaling (use --fp8-recipe delayed or tensorwise)",
                                     usage: "--fp8-recipe blockwise")
        case "custom":
            throw UnsupportedFeature(feature: "FP8 custom quantizers (a Python --fp8-quantizer-factory)", usage: "--fp8-recipe custom")
        default:
            return try choiceValue("--fp8-recipe", value, FP8Recipe.Scaling.allCases)
        }
    }

    private static func choiceValue<Choice: FlagChoice>(_ name: String, _ value: String, _ choices: [Choice]) throws -> Choice {
        let spelled = try Flag.checked(name, value, choices.map(\.rawValue))
        return choices.first { $0.rawValue == spelled }!
    }
}

extension PretrainArguments {
    /// The FP8 recipe the `--fp8-*` flags ask for, checked as Megatron's `TransformerConfig` checks it; nil
    /// without `--fp8-format` (the other flags are then unused, as in Megatron).
    ///
    /// ```swift
    /// let recipe = try MegatronArgumentParser.parse(["--fp8-format", "hybrid", ...]).fp8TrainingRecipe()
    /// ```
    public func fp8TrainingRecipe() throws -> FP8Recipe? {
        guard let fp8Format else { return nil }
        guard fp8AmaxHistoryLen >= 1 else {
            throw ArgumentError("--fp8-amax-history-len must be at least 1, got \(fp8AmaxHistoryLen)")
        }
        var recipe = FP8Recipe(format: fp8Format)
        recipe.scaling = fp8Recipe
        recipe.margin = fp8Margin
        recipe.amaxHistoryLength = fp8AmaxHistoryLen
        recipe.amaxComputeAlgo = fp8AmaxComputeAlgo
        recipe.fp8WeightGradient = fp8Wgrad
        if firstLastLayersBF16 {
            guard fp8Recipe != .delayed else {
                throw ArgumentError("--first-last-layers-bf16 does not work with --fp8-recipe delayed (Megatron: delayed scaling "
                    + "reduces amaxes once over the whole block); use --fp8-recipe tensorwise")
            }
            let perStage = numLayers / max(pipelineModelParallelSize, 1)
            for (flag, count) in [("--num-layers-at-start-in-bf16", numLayersAtStartInBF16), ("--num-layers-at-end-in-bf16", numLayersAtEndInBF16)]
            where count < 0 || count > perStage {
                throw ArgumentError("\(flag) (\(count)) must be between 0 and the layers per pipeline stage (\(perStage))")
            }
            (recipe.highPrecisionLayersAtStart, recipe.highPrecisionLayersAtEnd) = (numLayersAtStartInBF16, numLayersAtEndInBF16)
        }
        return recipe
    }
}
