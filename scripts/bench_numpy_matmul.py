#!/usr/bin/env python3
"""numpy's fp32 matmul GFLOP/s for the shapes `megatron bench matmul` times, to compare against.

OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when it loads; some machines here set them (older
OpenBLAS builds misbehave on those CPUs), which slows a current numpy. So numpy runs twice, each in
its own process: with the environment as it is, and with both variables unset; each run prints the
kernel OpenBLAS picked (threadpoolctl, when installed).

    python3 scripts/bench_numpy_matmul.py --size 1024 --repeat 10
    # numpy and the Swift GEMM in one run, alternating, with a summary:
    python3 scripts/bench_numpy_matmul.py --swift .build/release/megatron --rounds 3
"""
import argparse
import json
import os
import subprocess
import sys
import time

OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# (transA, transB, batch, m, n, k): the same list as `megatron bench matmul --transformer-shapes`.
TRANSFORMER_SHAPES = [
    (False, True, 1, 512, 768, 256),
    (False, True, 1, 512, 1024, 256),
    (False, False, 1, 512, 256, 1024),
    (True, False, 1, 1024, 256, 512),
    (False, True, 8, 128, 128, 64),
    (False, False, 8, 128, 64, 128),
    (False, False, 64, 32, 32, 32),
]


def shapes(size, transformer):
    square = [(ta, tb, 1, size, size, size) for ta in (False, True) for tb in (False, True)]
    return square + (TRANSFORMER_SHAPES if transformer else [])


def shape_name(ta, tb):
    return ("T" if ta else "N") + ("T" if tb else "N")


def time_numpy(shape_list, repeat):
    """Best and median GFLOP/s of `repeat` timed calls per shape, after a warm-up call."""
    import numpy as np

    rng = np.random.default_rng(0)
    results = []
    for ta, tb, batch, m, n, k in shape_list:
        # Transposed operands are transposed views, which numpy hands to BLAS as a transpose flag.
        a = rng.uniform(-1, 1, (batch, k, m) if ta else (batch, m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (batch, n, k) if tb else (batch, k, n)).astype(np.float32)
        a_op = a.transpose(0, 2, 1) if ta else a
        b_op = b.transpose(0, 2, 1) if tb else b
        c = np.empty((batch, m, n), dtype=np.float32)

        def call():
            for i in range(batch):
                np.matmul(a_op[i], b_op[i], out=c[i])

        call()
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        gflop = 2 * batch * m * n * k / 1e9
        seconds.sort()
        results.append({"op": shape_name(ta, tb), "batch": batch, "m": m, "n": n, "k": k,
                        "best": gflop / seconds[0], "median": gflop / seconds[len(seconds) // 2]})
    return results


def blas_description():
    import numpy  # noqa: F401  (threadpoolctl lists only libraries already loaded)
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed (pip install threadpoolctl to see the kernel)"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
                     f"threads={i.get('num_threads')}" for i in infos) or "no BLAS found"


def run_numpy_child(args, unset):
    """Runs this script's --child mode in a fresh process (OpenBLAS reads its variables at load)."""
    env = dict(os.environ)
    if unset:
        for name in OPENBLAS_VARIABLES:
            env.pop(name, None)
    command = [sys.executable, __file__, "--child", "--size", str(args.size), "--repeat", str(args.repeat)]
    if args.transformer_shapes:
        command.append("--transformer-shapes")
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_swift(args):
    command = [args.swift, "bench", "matmul", "--size", str(args.size), "--repeat", str(args.repeat)]
    if args.transformer_shapes:
        command.append("--transformer-shapes")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    results = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 8 and fields[0] in ("NN", "NT", "TN", "TT") and fields[1].isdigit():
            batch, m, n, k = map(int, fields[1:5])
            results.append({"op": fields[0], "batch": batch, "m": m, "n": n, "k": k,
                            "best": float(fields[5]), "median": float(fields[6])})
    return results


def print_table(title, results):
    print(title)
    print("op  batch     m     n     k   best GFLOP/s  median GFLOP/s")
    for r in results:
        print(f"{r['op']:<2}{r['batch']:>6}{r['m']:>6}{r['n']:>6}{r['k']:>6}{r['best']:>15.1f}{r['median']:>16.1f}")


def describe_environment(unset):
    if unset:
        return "numpy, " + " and ".join(OPENBLAS_VARIABLES) + " unset"
    present = [f"{name}={os.environ[name]}" for name in OPENBLAS_VARIABLES if name in os.environ]
    return "numpy, environment as is (" + (", ".join(present) if present else "neither variable set") + ")"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="m = n = k of the square products")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per shape")
    parser.add_argument("--transformer-shapes", action="store_true", help="also time small-transformer shapes")
    parser.add_argument("--swift", metavar="MEGATRON", help="also run MEGATRON bench matmul, alternating with numpy")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (with --swift); best of rounds is summarized")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size < 1 or args.repeat < 1 or args.rounds < 1:
        parser.error("--size, --repeat and --rounds must be at least 1")

    if args.child:
        print(json.dumps({"blas": blas_description(),
                          "results": time_numpy(shapes(args.size, args.transformer_shapes), args.repeat)}))
        return

    runs = {}  # label -> per-round result lists
    for round_index in range(args.rounds):
        for unset in (False, True):
            child = run_numpy_child(args, unset)
            label = describe_environment(unset)
            print_table(f"[round {round_index + 1}] {label}: {child['blas']}", child["results"])
            runs.setdefault(label, []).append(child["results"])
        if args.swift:
            results = run_swift(args)
            print_table(f"[round {round_index + 1}] Swift cpuSgemm ({args.swift})", results)
            runs.setdefault("swift", []).append(results)

    if args.swift:
        print(f"\nSummary: best GFLOP/s over {args.rounds} round(s)")
        labels = [label for label in runs if label != "swift"]
        print("op  batch     m     n     k   numpy as-is  numpy unset   Swift  Swift/best numpy")
        for i, shape in enumerate(runs["swift"][0]):
            best = {label: max(rounds[i]["best"] for rounds in runs[label]) for label in runs}
            numpy_best = max(best[label] for label in labels)
            print(f"{shape['op']:<2}{shape['batch']:>6}{shape['m']:>6}{shape['n']:>6}{shape['k']:>6}"
                  f"{best[labels[0]]:>14.1f}{best[labels[1]]:>13.1f}{best['swift']:>8.1f}"
                  f"{best['swift'] / numpy_best:>18.2f}")


if __name__ == "__main__":
    main()
