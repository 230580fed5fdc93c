// swift-tools-version: 6.0
import PackageDescription

// Layers, bottom-up (DESIGN.md): Tensor -> Autograd -> Core -> Training -> megatron.
// MegatronData (tokenizers, indexed datasets, GPT sample indices) needs no tensors and stands beside them.
let package = Package(
    name: "Megatron",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "megatron", targets: ["megatron"]),
        .library(name: "MegatronCore", targets: ["MegatronCore"]),
        .library(name: "MegatronData", targets: ["MegatronData"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .target(name: "MegatronTensor", dependencies: ["MegatronCUDA"]),
        // CUDA: a C shim that dlopens the driver, NVRTC and cuBLASLt, and a raw-pointer layer over it.
        .target(name: "CCUDA"),
        .target(name: "MegatronCUDA", dependencies: ["CCUDA"], plugins: ["EmbedKernels"]),
        .executableTarget(name: "EmbedKernelsTool", path: "Plugins/EmbedKernelsTool"),
        .plugin(name: "EmbedKernels", capability: .buildTool(), dependencies: ["EmbedKernelsTool"]),
        .target(name: "MegatronAutograd", dependencies: ["MegatronTensor"]),
        // Process controls Swift cannot call directly (prctl).
        .target(name: "CProcess"),
        // Communicators (in-process thread ranks, NCCL), process groups and the launcher.
        .target(name: "MegatronParallel",
                dependencies: ["MegatronTensor", "MegatronCUDA", "CCUDA", "CProcess"]),
        .target(name: "MegatronData"),
        .target(
            name: "MegatronCore",
            dependencies: ["MegatronTensor", "MegatronAutograd", "MegatronData", "MegatronParallel", "MegatronCUDA"]),
        .target(
            name: "MegatronTraining",
            dependencies: ["MegatronTensor", "MegatronAutograd", "MegatronCore", "MegatronData", "MegatronCUDA", "Yams"]),
        .executableTarget(
            name: "megatron",
            dependencies: [
                "MegatronCore", "MegatronData", "MegatronTraining", "MegatronCUDA",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // What every test target shares: GPU-or-skip, closeness assertions, seeded inputs, scratch paths.
        .target(name: "MegatronTestSupport", dependencies: ["MegatronTensor"], path: "Tests/MegatronTestSupport"),
        .testTarget(name: "MegatronTensorTests", dependencies: ["MegatronTensor", "MegatronTestSupport"]),
        .testTarget(name: "MegatronAutogradTests", dependencies: ["MegatronTensor", "MegatronAutograd", "MegatronTestSupport"]),
        .testTarget(
            name: "MegatronCoreTests",
            dependencies: ["MegatronTensor", "MegatronAutograd", "MegatronCore", "MegatronParallel", "MegatronTestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "MegatronTrainingTests",
                    dependencies: ["MegatronTraining", "MegatronCore", "MegatronTensor", "MegatronCUDA", "MegatronParallel",
                                   "MegatronTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "MegatronParallelTests", dependencies: ["MegatronParallel", "MegatronTensor", "MegatronTestSupport"]),
        .testTarget(name: "MegatronCUDATests", dependencies: ["MegatronCUDA", "MegatronTensor", "MegatronTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "MegatronDataTests", dependencies: ["MegatronData", "MegatronTestSupport"], resources: [.copy("Fixtures")]),
        // Runs the built `megatron` executable as a user does: bad input must end in a message, never a trap.
        .testTarget(name: "MegatronCLITests", dependencies: ["megatron", "MegatronTraining", "MegatronCore", "MegatronTestSupport"],
                    exclude: ["Fixtures"]),
    ],
    // Swift 5 mode: kernels hand raw pointers to worker threads, which strict Sendable checking rejects wholesale.
    swiftLanguageModes: [.v5]
)
