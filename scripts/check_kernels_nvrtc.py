#!/usr/bin/env python3
"""Compiles every kernel source under Sources/MegatronCUDA/Kernels (its op-family folders) with NVRTC, as the program does at run
time (same prefix headers, same options), without a GPU: a syntax and type check before a device run.

    pip install nvidia-cuda-nvrtc-cu12     # or -cu13
    python3 scripts/check_kernels_nvrtc.py [--arch sm_90a] [--verbose] [--define NAME=VALUE ...] [file.cu ...]

--verbose also lists each kernel's registers and spills (ptxas's report; needs a real architecture
such as sm_90a, which compiles to a CUBIN), e.g. to check that a kernel keeps the occupancy its
__launch_bounds__ and launcher assume.

--define passes -D options as a program's source would define them, e.g. flash attention's head dim
and tiling (CUDAKernels.programSource): --define FA_HEAD_DIM=80 --define "FA_TILING=2, 32, 1, 32, 1, 32".

The buffer and tensor-op files (CUDAKernels.codeHeaderFiles) get common.cuh, kernel_codes.cuh and fp8.cuh in front;
the others get common.cuh, neural.cuh, then fp8.cuh (CUDAKernels.headers). Exits
non-zero on any error.
"""
import argparse
import ctypes
import glob
import os
import re
import sys

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "MegatronCUDA", "Kernels")
# Compiled without neural.cuh (CUDAKernels.codeHeaderFiles); every other .cu also gets it.
COMMON_ONLY = {"elementwise.cu", "reduce.cu", "tensor_ops.cu"}
# What goes in front of flash_attention.cu (CUDAKernels.programSource).
FLASH_ATTENTION_PARTS = ["flash_attention_masks.cuh", "flash_attention_common.cuh", "flash_attention_forward.cuh",
                         "flash_attention_backward.cuh"]
OPTIONS = ["--std=c++17", "-default-device", "-lineinfo"]   # KernelCompiler.baseOptions


def load_nvrtc():
    candidates = []
    try:
        import nvidia.cuda_nvrtc
        for root in nvidia.cuda_nvrtc.__path__:
            candidates += sorted(glob.glob(os.path.join(root, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    candidates += ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    for name in candidates:
        if "builtins" in name or "alt" in name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    sys.exit("libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12")


def kernel_paths():
    """Every .cu / .cuh under KERNELS by file name (names are unique across the op-family folders)."""
    return {os.path.basename(p): p for p in glob.glob(os.path.join(KERNELS, "**", "*.cu*"), recursive=True)}


def source_of(name):
    parts = ["common.cuh"] + (["kernel_codes.cuh"] if name in COMMON_ONLY else ["neural.cuh"]) + ["fp8.cuh"]
    parts += FLASH_ATTENTION_PARTS if name == "flash_attention.cu" else []
    parts.append(name)
    paths = kernel_paths()
    return "\n".join(open(paths[p], encoding="utf-8").read() for p in parts)


def compile_one(nvrtc, name, arch, verbose=False, defines=()):
    program = ctypes.c_void_p()
    source = source_of(name).encode()
    status = nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, name.encode(), 0, None, None)
    assert status == 0, f"nvrtcCreateProgram: {status}"
    extra = ["--ptxas-options=--verbose"] if verbose else []
    options = [o.encode() for o in OPTIONS + extra + [f"--gpu-architecture={arch}"] + [f"-D{d}" for d in defines]]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return status, log.value.decode(errors="replace").strip()


def register_report(log):
    """One line per kernel from ptxas's verbose log: registers, spill stores / loads (bytes)."""
    lines, kernel, spills = [], None, ""
    for line in log.splitlines():
        if match := re.search(r"Compiling entry function '(\w+)'", line):
            kernel = match.group(1)
        elif match := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line):
            spills = f"spills {match.group(1)}/{match.group(2)} B" if match.group(1) != "0" or match.group(2) != "0" else ""
        elif kernel and (match := re.search(r"Used (\d+) registers", line)):
            lines.append(f"{kernel:40s} {int(match.group(1)):4d} registers  {spills}".rstrip())
            kernel, spills = None, ""
    return sorted(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sm_90a")
    parser.add_argument("--verbose", action="store_true", help="list registers and spills per kernel")
    parser.add_argument("--define", action="append", default=[], help="NAME=VALUE, passed as -D")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    nvrtc = load_nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    files = args.files or sorted(name for name in kernel_paths() if name.endswith(".cu"))
    failed = 0
    for name in files:
        status, log = compile_one(nvrtc, name, args.arch, args.verbose, args.define)
        print(f"{'ok  ' if status == 0 else 'FAIL'} {name} (NVRTC {major.value}.{minor.value}, {args.arch})")
        if args.verbose and status == 0:
            for line in register_report(log):
                print("    " + line)
            log = "\n".join(l for l in log.splitlines() if not l.startswith("ptxas"))
        if log and (status != 0 or "warning" in log):
            print("    " + log.replace("\n", "\n    "))
        failed += status != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
