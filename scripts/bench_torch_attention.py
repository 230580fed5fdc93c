#!/usr/bin/env python3
"""torch.nn.functional.scaled_dot_product_attention (bf16) on the shapes of `megatron bench attention`.

Times the forward and forward + backward with CUDA events the same way (warm-up for --warmup-ms, then
--trials trials of about --trial-ms each, median reported) and counts FLOPs the same way: forward
4*b*h*s*s*d (halved when causal), backward 2.5 times that. Tensors are made [b, s, h, d] and
transposed to [b, h, s, d], the layout a fused QKV projection gives.

    python3 scripts/bench_torch_attention.py [--shapes 16x12x1024x64,4x16x2048x128] [--kv-heads N] [--full]
"""
import argparse
import math
import statistics

import torch
import torch.nn.functional as F


def timed_median(body, warmup_ms, trial_ms, trials):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timed(runs):
        start.record()
        for _ in range(runs):
            body()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / runs

    single = max(timed(2), 1e-3)
    timed(math.ceil(warmup_ms / single))
    runs = max(5, math.ceil(trial_ms / single))
    return statistics.median([timed(runs) for _ in range(trials)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="16x12x1024x64,4x16x2048x128")
    parser.add_argument("--kv-heads", type=int, default=None)
    parser.add_argument("--full", action="store_true", help="attend to every key (default: causal)")
    parser.add_argument("--warmup-ms", type=float, default=200)
    parser.add_argument("--trial-ms", type=float, default=50)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    causal = not args.full
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; bf16, {'causal' if causal else 'full'} attention")
    print("shape (b x h x s x d)      kv   fwd ms  fwd TFLOP/s  fwd+bwd ms  fwd+bwd TFLOP/s")
    for item in args.shapes.split(","):
        b, h, s, d = (int(x) for x in item.split("x"))
        kv = args.kv_heads or h

        def make(heads):
            x = torch.empty(b, s, heads, d, device="cuda", dtype=torch.bfloat16).uniform_(-1, 1).transpose(1, 2)
            return x.requires_grad_()

        q, k, v = make(h), make(kv), make(kv)
        gqa = kv != h
        dout = torch.empty(b, h, s, d, device="cuda", dtype=torch.bfloat16).uniform_(-1, 1)

        def forward():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

        def both():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
            torch.autograd.grad(out, (q, k, v), dout)

        fwd = timed_median(forward, args.warmup_ms, args.trial_ms, args.trials)
        fb = timed_median(both, args.warmup_ms, args.trial_ms, args.trials)
        flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0)
        print(f"{item:<26}{kv:3d} {fwd:8.3f} {flops / fwd / 1e9:12.1f} {fb:11.3f} {3.5 * flops / fb / 1e9:16.1f}")


if __name__ == "__main__":
    main()
