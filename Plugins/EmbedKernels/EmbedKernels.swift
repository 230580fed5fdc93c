import Foundation
import PackagePlugin

/// Build-tool plugin: turns a target's CUDA sources (`*.cu`, `*.cuh`) into a generated Swift file
/// of string constants, `EmbeddedKernels.sources`, so the static binary carries its kernels
/// (it has no resource bundle) while the tree keeps them as readable `.cu` files.
@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let module = target as? SourceModuleTarget else { return [] }
        let inputs = module.sourceFiles
            .map(\.url)
            .filter { ["cu", "cuh"].contains($0.pathExtension) }
            .sorted { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("EmbeddedKernels.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) CUDA kernel source(s) into \(target.name)",
                executable: try context.tool(named: "EmbedKernelsTool").url,
                arguments: [output.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
