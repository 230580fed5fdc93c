#!/usr/bin/env python3
"""PyTorch reference for `megatron bench train`: the same GPT configs trained the nanoGPT way
(bf16 autocast, scaled_dot_product_attention, fused AdamW, torch.compile), timed the same way.

    python3 scripts/bench_torch_gpt.py --num-layers 12 --hidden-size 768 --num-attention-heads 12 \
        --seq-length 1024 --micro-batch-size 16          # GPT-2 124M
    python3 scripts/bench_torch_gpt.py --num-layers 16 --hidden-size 2048 --num-attention-heads 32 \
        --num-query-groups 8 --ffn-hidden-size 8192 --swiglu --normalization RMSNorm \
        --position-embedding-type rope --untie-embeddings-and-output-weights --seq-length 2048 --micro-batch-size 4

--hidden-dropout / --attention-dropout (default 0, as the timings so far) drop as Megatron does: the
embeddings and each residual branch before its add, and the attention probabilities inside SDPA.

--float8 trains the transformer layers' linear layers (QKV, projection, FC1, FC2; not the output layer,
as Megatron's FP8) through torchao's float8 training with tensorwise (current) scaling
(`convert_to_float8_training`, torchao's default recipe: e4m3 operands, dynamic per-tensor scales) under
torch.compile: the PyTorch reference for `bench train --fp8-format hybrid`. torchao is a pip wheel
(scripts/device-fp8-bench.sh installs it).

Prints one line like ours: ms/iter | tokens/s | TFLOP/s (Megatron's formula) | peak GPU memory.
Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel, one micro-batch per GPU, and rank 0
prints the job's tokens/s (the weak-scaling figure):

    torchrun --nproc-per-node 4 scripts/bench_torch_gpt.py --num-layers 24 --hidden-size 2048 \
        --num-attention-heads 16 --seq-length 2048 --micro-batch-size 4
"""
import os
import argparse
import math
import time
from importlib.metadata import version

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse(add_arguments=None):
    """Megatron-style flags; `add_arguments(parser)` adds a caller's own (bench_torch_moe.py's MoE flags)."""
    p = argparse.ArgumentParser()
    p.add_argument("--num-layers", type=int, default=12)
    p.add_argument("--hidden-size", type=int, default=768)
    p.add_argument("--num-attention-heads", type=int, default=12)
    p.add_argument("--num-query-groups", type=int, default=None)
    p.add_argument("--ffn-hidden-size", type=int, default=None)
    p.add_argument("--seq-length", type=int, default=1024)
    p.add_argument("--micro-batch-size", type=int, default=16)
    p.add_argument("--vocab-size", type=int, default=50304)
    p.add_argument("--swiglu", action="store_true")
    p.add_argument("--normalization", default="LayerNorm", choices=["LayerNorm", "RMSNorm"])
    p.add_argument("--position-embedding-type", default="learned_absolute", choices=["learned_absolute", "rope"])
    p.add_argument("--untie-embeddings-and-output-weights", action="store_true")
    p.add_argument("--hidden-dropout", type=float, default=0.0)
    p.add_argument("--attention-dropout", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--float8", action="store_true", help="the block linears in float8 (torchao, tensorwise scaling)")
    p.add_argument("--profile", action="store_true", help="after timing, print the top GPU kernels of 2 steps")
    if add_arguments:
        add_arguments(p)
    return p.parse_args()


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        h, self.heads = a.hidden_size, a.num_attention_heads
        self.groups = a.num_query_groups or a.num_attention_heads
        self.d = h // self.heads
        norm = nn.LayerNorm if a.normalization == "LayerNorm" else nn.RMSNorm
        self.norm1, self.norm2 = norm(h), norm(h)
        self.qkv = nn.Linear(h, (self.heads + 2 * self.groups) * self.d, bias=not a.swiglu)
        self.proj = nn.Linear(h, h, bias=not a.swiglu)
        self.swiglu = a.swiglu
        self.make_mlp(a)
        self.rope = a.position_embedding_type == "rope"
        self.drop = nn.Dropout(a.hidden_dropout)
        self.attention_dropout = a.attention_dropout

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(
            [self.heads * self.d, self.groups * self.d, self.groups * self.d], dim=-1)
        q = q.view(b, s, self.heads, self.d).transpose(1, 2)
        k = k.view(b, s, self.groups, self.d).transpose(1, 2)
        v = v.view(b, s, self.groups, self.d).transpose(1, 2)
        if self.rope:
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.groups != self.heads,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, s, -1)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def make_mlp(self, a):
        """The dense MLP; bench_torch_moe.py's block makes its experts here instead."""
        ffn = a.ffn_hidden_size or 4 * a.hidden_size
        self.fc1 = nn.Linear(a.hidden_size, 2 * ffn if a.swiglu else ffn, bias=not a.swiglu)
        self.fc2 = nn.Linear(ffn, a.hidden_size, bias=not a.swiglu)

    def mlp(self, x):
        return self.fc2(activate(self.fc1(x), self.swiglu))


def activate(hidden, swiglu):
    """SwiGLU over [gate; up] halves, or tanh GeLU."""
    if swiglu:
        gate, up = hidden.chunk(2, dim=-1)
        return F.silu(gate) * up
    return F.gelu(hidden, approximate="tanh")


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class GPT(nn.Module):
    def __init__(self, a, block=Block):
        super().__init__()
        self.embed = nn.Embedding(a.vocab_size, a.hidden_size)
        self.positions = nn.Embedding(a.seq_length, a.hidden_size) if a.position_embedding_type != "rope" else None
        self.blocks = nn.ModuleList(block(a) for _ in range(a.num_layers))
        norm = nn.LayerNorm if a.normalization == "LayerNorm" else nn.RMSNorm
        self.norm = norm(a.hidden_size)
        self.head = nn.Linear(a.hidden_size, a.vocab_size, bias=False)
        self.drop = nn.Dropout(a.hidden_dropout)
        if not a.untie_embeddings_and_output_weights:
            self.head.weight = self.embed.weight
        d = a.hidden_size // a.num_attention_heads
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
        angles = torch.outer(torch.arange(a.seq_length).float(), inv)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, tokens, labels):
        x = self.embed(tokens)
        if self.positions is not None:
            x = x + self.positions(torch.arange(tokens.shape[1], device=tokens.device))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


def megatron_flops(a, batch, mlp_units=None):
    """Megatron's num_floating_point_operations, as `trainingFLOPs` in FLOPs.swift; `mlp_units` is the MLP's
    active width summed over layers (an MoE model's routed and shared experts), the dense ffn size by default."""
    h, layers, s, v = a.hidden_size, a.num_layers, a.seq_length, a.vocab_size
    d = h // a.num_attention_heads
    q, kv = d * a.num_attention_heads, d * (a.num_query_groups or a.num_attention_heads)
    units = mlp_units if mlp_units is not None else (a.ffn_hidden_size or 4 * h) * layers
    per_token = h * units * (3 if a.swiglu else 2) + layers * (h * (q + 2 * kv) + q * h) + h * v
    return batch * s * 6 * per_token + batch * s * s * 6 * q * layers


def convert_block_linears_to_float8(model):
    """torchao's float8 training for the blocks' nn.Linear layers; the output layer stays bf16 as in Megatron."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    convert_to_float8_training(model, config=Float8LinearConfig.from_recipe_name("tensorwise"),
                               module_filter_fn=lambda module, fqn: fqn.startswith("blocks."))
    converted = sum(type(m).__name__ == "Float8Linear" for m in model.modules())
    assert converted == 4 * len(model.blocks), f"torchao converted {converted} linear layers"


def main(a=None, model=None, flops=None, label=""):
    """Trains and times `model` (the dense GPT of `a` by default); `flops(a, batch)` counts its FLOPs per step."""
    a = a or parse()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    model = (model or GPT(a)).cuda()
    if a.float8:
        convert_block_linears_to_float8(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    step_model = model if a.no_compile else torch.compile(model)
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(step_model, device_ids=[torch.cuda.current_device()])
    torch.manual_seed(rank + 1)
    tokens = torch.randint(0, a.vocab_size, (a.micro_batch_size, a.seq_length + 1), device="cuda")
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(a.iterations):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / a.iterations
    tokens_per_iter = a.micro_batch_size * a.seq_length * world
    params = sum(p.numel() for p in model.parameters())
    if rank != 0:
        return
    precision = f"float8 (torchao {version('torchao')}, tensorwise)" if a.float8 else "bf16"
    print(f"torch {torch.__version__} {precision} {'compiled' if not a.no_compile else 'eager'}{f' DDP x{world}' if world > 1 else ''}{label}, "
          f"dropout {a.hidden_dropout}/{a.attention_dropout}, "
          f"{params / 1e6:.1f}M params: "
          f"{seconds * 1000:.1f} ms/iter | {tokens_per_iter / seconds:.0f} tokens/s | "
          f"{(flops or megatron_flops)(a, a.micro_batch_size) / seconds / 1e12:.3f} TFLOP/s per GPU | "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated, "
          f"{torch.cuda.max_memory_reserved() / 2**20:.0f} MiB reserved")
    if a.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(2):
                step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))


if __name__ == "__main__":
    main()
