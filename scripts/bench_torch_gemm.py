#!/usr/bin/env python3
"""torch.matmul (bf16) on the GEMM shapes of `megatron bench gemm`, timed the same way.

For each linear layer y = x @ w.T of a GPT model (QKV, MLP fc1/fc2, logits) it times the forward
product and the two backward products (dgrad dx = dy @ w, wgrad dw = dy.T @ x) with CUDA events:
warm-up for --warmup-ms, then --trials timed trials of about --trial-ms each, median reported.

    python3 scripts/bench_torch_gemm.py [--passes 3] [--megatron path/to/megatron [--megatron-args=--autotune]]

GPU clocks drift with power and temperature by several percent over a run, so each shape is timed
--passes times and the best median kept. With --megatron, every torch pass of a shape is followed
at once by `megatron bench gemm --only SHAPE` with the same settings, so both sides of each
ratio see the same conditions; the table adds our TFLOP/s and ours/torch.
"""
import argparse
import math
import statistics
import subprocess
import time

import torch


def shapes(tokens, hidden, ffn, vocab):
    """(name, M, K, N, layer in, layer out, operands) in the order megatron bench gemm prints them."""
    result = []
    for name, fan_in, fan_out in [("qkv", hidden, 3 * hidden), ("fc1", hidden, ffn), ("fc2", ffn, hidden),
                                  ("logits", hidden, vocab)]:
        result.append((f"{name}.fwd", tokens, fan_in, fan_out, fan_in, fan_out, lambda x, w, dy: (x, w.t())))
        result.append((f"{name}.dgrad", tokens, fan_out, fan_in, fan_in, fan_out, lambda x, w, dy: (dy, w)))
        result.append((f"{name}.wgrad", fan_out, tokens, fan_in, fan_in, fan_out, lambda x, w, dy: (dy.t(), x)))
    return result


def time_shape(tokens, fan_in, fan_out, operands, warmup_ms, trial_ms, trials):
    # Random data: zeros run faster on tensor cores than real values.
    x = torch.empty(tokens, fan_in, device="cuda", dtype=torch.bfloat16).uniform_(-1, 1)
    w = torch.empty(fan_out, fan_in, device="cuda", dtype=torch.bfloat16).uniform_(-1, 1)
    dy = torch.empty(tokens, fan_out, device="cuda", dtype=torch.bfloat16).uniform_(-1, 1)
    a, b = operands(x, w, dy)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timed(runs):
        start.record()
        for _ in range(runs):
            torch.matmul(a, b)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / runs

    # Same schedule as megatron bench gemm: warm up for warmup_ms, then trials of about trial_ms.
    single = max(timed(3), 1e-3)
    timed(math.ceil(warmup_ms / single))
    iterations = max(5, math.ceil(trial_ms / single))
    return statistics.median([timed(iterations) for _ in range(trials)])


def run_megatron(binary, args, shape, extra):
    """name -> ms/iter from one run of `megatron bench gemm` with the same shapes and timing."""
    command = [binary, "bench", "gemm", "--tokens", str(args.tokens), "--hidden", str(args.hidden),
               "--vocab", str(args.vocab), "--warmup-ms", str(args.warmup_ms), "--trial-ms", str(args.trial_ms),
               "--trials", str(args.trials), "--only", shape] + extra
    if args.ffn_hidden:
        command += ["--ffn-hidden", str(args.ffn_hidden)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    print(output, end="")
    times = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 6 and "." in fields[0] and fields[1].isdigit():
            times[fields[0]] = float(fields[4])
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--ffn-hidden", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--warmup-ms", type=float, default=200.0)
    parser.add_argument("--trial-ms", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--megatron", help="megatron binary to run after each torch pass of a shape")
    parser.add_argument("--pause-s", type=float, default=0.5, help="idle pause before each torch measurement")
    parser.add_argument("--megatron-args", default="",
                        help="extra arguments for megatron bench gemm; dash-led, so given with = (--megatron-args=--autotune)")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, torch.matmul (bf16)")
    table = shapes(args.tokens, args.hidden, args.ffn_hidden or 4 * args.hidden, args.vocab)
    best, ours = {}, {}
    for name, m, k, n, fan_in, fan_out, operands in table:
        for _ in range(args.passes):
            # Each megatron run starts after a process start-up pause, in which the GPU cools and
            # boosts; give torch the same pause so neither side gets the cooler card.
            time.sleep(args.pause_s)
            ms = time_shape(args.tokens, fan_in, fan_out, operands, args.warmup_ms, args.trial_ms, args.trials)
            best[name] = min(best.get(name, float("inf")), ms)
            if args.megatron:
                ms = run_megatron(args.megatron, args, name, args.megatron_args.split())[name]
                ours[name] = min(ours.get(name, float("inf")), ms)
    print(f"best of {args.passes} pass(es)")
    print("shape            M      K      N    ms/iter   TFLOP/s" + ("   ours TFLOP/s  ours/torch" if ours else ""))
    total_flops = total_ms = total_ours = 0.0
    for name, m, k, n, _, _, _ in table:
        ms = best[name]
        flops = 2.0 * m * n * k
        total_flops, total_ms = total_flops + flops, total_ms + ms
        tflops = flops / ms / 1e9
        extra = ""
        if name in ours:
            total_ours += ours[name]
            extra = f"   {flops / ours[name] / 1e9:12.1f}  {ms / ours[name]:10.3f}"
        print(f"{name:<12} {m:6d} {k:6d} {n:6d} {ms:10.3f} {tflops:9.1f}{extra}")
    summary = f"all shapes: torch {total_ms:.3f} ms, {total_flops / total_ms / 1e9:.1f} TFLOP/s"
    if ours:
        summary += f"; ours {total_ours:.3f} ms, {total_flops / total_ours / 1e9:.1f} TFLOP/s"
    print(summary)


if __name__ == "__main__":
    main()
