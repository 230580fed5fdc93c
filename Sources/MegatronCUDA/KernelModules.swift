import Foundation

/// When the kernel programs of `CUDAKernels` are compiled.
public enum KernelLoading: Sendable {
    /// Every file starts compiling on background threads at construction, all at once; a launch
    /// waits only for its own file's module. A file's compile error is thrown by each launch that
    /// needs it. The default: start-up does not wait for kernels a run never launches.
    case background
    /// Construction waits until every file is compiled and loaded, and throws the first error.
    case eager
}

/// How long one kernel file took to become an image, and where it came from.
public struct KernelModuleTiming: Sendable {
    /// The file, or program of a file split by type (`norm.cu[bf16]`, see `CUDAKernels.programs`).
    public var file: String
    /// This file's NVRTC compilation (or disk cache read) alone.
    public var milliseconds: Double
    /// From construction of its kernel set until this file's image was ready.
    public var readyAfterMilliseconds: Double
    public var fromCache: Bool
}

/// A set of kernel files compiled concurrently in the background from construction (through the
/// disk cache), each loaded into the device the first time a launch asks for it. Programs that
/// `compilesOnDemand` accepts (flash attention's rarer head dims) are compiled when first asked for.
///
///     let modules = KernelModules(files: ["softmax.cu", "norm.cu"], compiler: compiler, source: CUDAKernels.source)
///     let module = try modules.module("norm.cu", device: device)   // waits for norm.cu only
final class KernelModules {
    private struct Compiled {
        var image: KernelImage
        var timing: KernelModuleTiming
    }

    /// One file: its compilation, and its module once loaded (under `lock`).
    private final class Slot {
        let compilation: BackgroundTask<Compiled>
        let lock = NSLock()
        var module: CUDAModule?

        init(_ compilation: BackgroundTask<Compiled>) { self.compilation = compilation }
    }

    /// The programs started at construction (`timings` and `report` cover these).
    let files: [String]
    private let compiler: KernelCompiler
    private let source: (String) throws -> String
    private let compilesOnDemand: (String) -> Bool
    private let start = DispatchTime.now()
    private let slotsLock = NSLock()
    private var slots: [String: Slot] = [:]

    /// Starts compiling every file of `files` (`source(file)` is the text NVRTC compiles); another
    /// program is compiled when first asked for if `compilesOnDemand` accepts its name.
    init(files: [String], compiler: KernelCompiler, source: @escaping (String) throws -> String,
         compilesOnDemand: @escaping (String) -> Bool = { _ in false }) {
        (self.files, self.compiler, self.source, self.compilesOnDemand) = (files, compiler, source, compilesOnDemand)
        let made = files.map(makeSlot)
        slots = Dictionary(uniqueKeysWithValues: zip(files, made))
        made.forEach { $0.compilation.start() }
    }

    private func makeSlot(_ file: String) -> Slot {
        let (compiler, source, start) = (self.compiler, self.source, self.start)
        return Slot(BackgroundTask {
            let began = DispatchTime.now()
            let image = try compiler.compile(source: try source(file), name: file)
            let end = DispatchTime.now()
            return Compiled(image: image, timing: KernelModuleTiming(
                file: file, milliseconds: Self.milliseconds(from: began, to: end),
                readyAfterMilliseconds: Self.milliseconds(from: start, to: end), fromCache: image.fromCache))
        })
    }

    /// The compiled image of `file`, waiting for its compilation; throws its error (NVRTC's log
    /// for a compile error) to every caller.
    func image(_ file: String) throws -> KernelImage {
        try slot(file).compilation.value().image
    }

    /// The module of `file` loaded into `device`: waits for its compilation, loads it on the first
    /// call (on the calling thread; `CUDAModule` makes the device's context current there).
    func module(_ file: String, device: CUDADevice) throws -> CUDAModule {
        let slot = try slot(file)
        slot.lock.lock()
        defer { slot.lock.unlock() }
        if let module = slot.module { return module }
        let module = try CUDAModule(device: device, image: try slot.compilation.value().image)
        slot.module = module
        return module
    }

    /// Loads every module, throwing the first failure in file order.
    func loadAll(device: CUDADevice) throws {
        for file in files { _ = try module(file, device: device) }
    }

    /// Per-file timings, in file order, after waiting for every compilation; files that failed to
    /// compile are left out (their error reaches `image`, `module` and `loadAll`).
    func timings() -> [KernelModuleTiming] {
        files.compactMap { try? slot($0).compilation.value().timing }
    }

    /// The whole set, after waiting for every compilation: milliseconds from construction until the
    /// last image was ready, and how many were compiled or read from the cache.
    func report() -> KernelLoadReport {
        let timings = timings()
        let cached = timings.filter(\.fromCache).count
        return KernelLoadReport(milliseconds: timings.map(\.readyAfterMilliseconds).max() ?? 0,
                                compiledCount: timings.count - cached, cachedCount: cached)
    }

    private func slot(_ file: String) throws -> Slot {
        slotsLock.lock()
        defer { slotsLock.unlock() }
        if let slot = slots[file] { return slot }
        guard compilesOnDemand(file) else {
            throw CUDAError.invalidArgument("no kernel module \(file); have \(files.joined(separator: ", "))")
        }
        let slot = makeSlot(file)   // compiled by the first caller of its value, on that caller's thread
        slots[file] = slot
        return slot
    }

    private static func milliseconds(from start: DispatchTime, to end: DispatchTime) -> Double {
        Double(end.uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    }
}
