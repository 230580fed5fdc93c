import ArgumentParser
import MegatronParallel

/// The `megatron` program: one subcommand per Megatron-LM tool.
@main
struct Megatron: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "megatron",
        abstract: "Megatron-LM and Megatron Core in Swift: train transformer language models, one static binary.",
        subcommands: [PretrainGPT.self, PreprocessData.self, Generate.self, Convert.self, Bench.self, Launch.self],
        defaultSubcommand: nil)

    static func main() {
        // A rank that `megatron launch` started ends with it, even when the launcher is killed with SIGKILL.
        LauncherLink.followLauncher()
        main(nil)
    }
}
