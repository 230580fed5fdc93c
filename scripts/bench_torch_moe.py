#!/usr/bin/env python3
"""PyTorch reference for `megatron bench train` with MoE flags: bench_torch_gpt.py's LLaMA-style GPT (RMSNorm,
RoPE, GQA, SDPA, bf16 autocast, fused AdamW, torch.compile, timed the same way) whose MLPs are mixtures of
experts as Megatron Core builds them: a router (fp32 logits, top-k, softmax over the k chosen), SwiGLU experts,
each token's expert outputs weighted by its routing probability and summed, and optionally a shared expert every
token goes through. The experts run as `torch._grouped_mm` (one grouped GEMM for all experts' FC1, one for FC2;
token groups padded to 16 rows as torchtitan does) when this torch has it, else one expert after another.
No load-balancing loss (Megatron's default --moe-aux-loss-coeff 0), as in the runs it is compared with.

    python3 scripts/bench_torch_moe.py --num-layers 16 --hidden-size 2048 --num-attention-heads 16 \\
        --num-query-groups 4 --swiglu --normalization RMSNorm --position-embedding-type rope \\
        --untie-embeddings-and-output-weights --seq-length 2048 --micro-batch-size 2 \\
        --num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 2816          # Mixtral-style

Prints bench_torch_gpt.py's line (ms/iter | tokens/s | TFLOP/s on the active parameters, Megatron's formula |
peak GPU memory). `--check` instead compares the grouped experts with the per-expert loop on a small layer
(on the CPU where no GPU is found) and exits.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_torch_gpt import GPT, Block, activate, main, megatron_flops, parse

# Rows per expert group a grouped GEMM gets, a multiple of this (torchtitan's alignment for bf16).
GROUP_ALIGNMENT = 16


def add_moe_arguments(p):
    p.add_argument("--num-experts", type=int, required=True)
    p.add_argument("--moe-router-topk", type=int, default=2)
    p.add_argument("--moe-ffn-hidden-size", type=int, required=True)
    p.add_argument("--moe-shared-expert-intermediate-size", type=int, default=None)
    p.add_argument("--experts", choices=["auto", "grouped", "loop"], default="auto",
                   help="torch._grouped_mm, or one expert after another (auto: grouped when torch has it)")
    p.add_argument("--check", action="store_true", help="compare grouped and looped experts on a small layer and exit")


def grouped_mm_available():
    return hasattr(torch, "_grouped_mm")


class MoEBlock(Block):
    """bench_torch_gpt.py's block with a mixture of experts as its MLP."""

    def make_mlp(self, a):
        h, f, self.experts, self.topk = a.hidden_size, a.moe_ffn_hidden_size, a.num_experts, a.moe_router_topk
        self.grouped = a.experts == "grouped" or (a.experts == "auto" and grouped_mm_available())
        self.router = nn.Linear(h, self.experts, bias=False)
        # Megatron's layout per expert: fc1 [2f, h] ([gate; up]), fc2 [h, f].
        self.fc1 = nn.Parameter(torch.randn(self.experts, 2 * f if a.swiglu else f, h) * 0.02)
        self.fc2 = nn.Parameter(torch.randn(self.experts, h, f) * 0.02)
        shared = a.moe_shared_expert_intermediate_size
        self.shared_fc1 = nn.Linear(h, 2 * shared if a.swiglu else shared, bias=False) if shared else None
        self.shared_fc2 = nn.Linear(shared, h, bias=False) if shared else None

    def mlp(self, x):
        b, s, h = x.shape
        tokens = x.reshape(-1, h)
        # Router in fp32, top-k of the logits, softmax over the chosen k (Megatron's default routing).
        logits = F.linear(tokens.float(), self.router.weight.float())
        top_logits, top_experts = logits.topk(self.topk, dim=-1)
        probs = top_logits.softmax(dim=-1)
        # Tokens sorted by expert (stable: token order kept within each expert, as Megatron's permute).
        flat_experts = top_experts.reshape(-1)
        order = flat_experts.argsort(stable=True)
        token_of = order // self.topk
        counts = F.one_hot(flat_experts, self.experts).sum(0)
        run = self.grouped_experts if self.grouped else self.looped_experts
        routed = run(tokens[token_of], probs.reshape(-1)[order], flat_experts[order], counts)
        out = torch.zeros_like(tokens).index_add(0, token_of, routed.to(tokens.dtype))
        if self.shared_fc1 is not None:
            out = out + self.shared_fc2(activate(self.shared_fc1(tokens), self.swiglu))
        return out.reshape(b, s, h)

    def expert_activation(self, hidden, probs):
        return (activate(hidden, self.swiglu).float() * probs[:, None]).to(hidden.dtype)

    def grouped_experts(self, sorted_tokens, probs, experts_of, counts):
        """All experts in two grouped GEMMs: each expert's rows start at a multiple of GROUP_ALIGNMENT in a
        buffer of static size (padding rows are zeros and are dropped), so the graph has no data-dependent shape."""
        rows, h = sorted_tokens.shape
        padded = (counts + GROUP_ALIGNMENT - 1) // GROUP_ALIGNMENT * GROUP_ALIGNMENT
        starts, padded_starts = counts.cumsum(0) - counts, padded.cumsum(0) - padded
        slots = padded_starts[experts_of] + torch.arange(rows, device=counts.device) - starts[experts_of]
        capacity = rows + self.experts * GROUP_ALIGNMENT
        device_type = sorted_tokens.device.type
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else sorted_tokens.dtype
        buffer = sorted_tokens.new_zeros(capacity, h, dtype=dtype).index_copy(0, slots, sorted_tokens.to(dtype))
        offsets = padded.cumsum(0).to(torch.int32)
        hidden = torch._grouped_mm(buffer, self.fc1.to(dtype).transpose(-2, -1), offs=offsets)
        slot_probs = probs.new_zeros(capacity).index_copy(0, slots, probs)
        activated = self.expert_activation(hidden, slot_probs)
        return torch._grouped_mm(activated, self.fc2.to(dtype).transpose(-2, -1), offs=offsets)[slots]

    @torch.compiler.disable
    def looped_experts(self, sorted_tokens, probs, experts_of, counts):
        """One expert after another (Megatron's SequentialMLP): data-dependent shapes, so not compiled."""
        outputs, start = [], 0
        for e, count in enumerate(counts.tolist()):
            rows = slice(start, start + count)
            hidden = F.linear(sorted_tokens[rows], self.fc1[e])
            outputs.append(F.linear(self.expert_activation(hidden, probs[rows]), self.fc2[e]))
            start += count
        return torch.cat(outputs)


def active_mlp_units(a):
    """The MLP width each token uses, summed over layers: top-k experts plus the shared expert."""
    return (a.moe_router_topk * a.moe_ffn_hidden_size + (a.moe_shared_expert_intermediate_size or 0)) * a.num_layers


def check(a):
    """The grouped experts against the loop on a small layer: outputs and gradients within bf16 rounding."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a.hidden_size, a.moe_ffn_hidden_size, a.num_attention_heads, a.num_query_groups = 64, 32, 4, None
    torch.manual_seed(0)
    block = MoEBlock(a).to(device)
    x = torch.randn(2, 24, 64, device=device)
    results = []
    for grouped in (True, False):
        block.grouped = grouped
        block.zero_grad()
        xi = x.clone().requires_grad_()
        with torch.autocast(device, dtype=torch.bfloat16):
            y = block.mlp(xi)
        (y.float() * torch.linspace(-1, 1, y.numel(), device=device).view_as(y)).sum().backward()
        results.append([y.float(), xi.grad] + [p.grad.float() for p in (block.fc1, block.fc2, block.router.weight)])
    for name, g, l in zip(["output", "input grad", "fc1 grad", "fc2 grad", "router grad"], *results):
        error = ((g - l).norm() / l.norm().clamp_min(1e-12)).item()
        print(f"{name}: relative error {error:.2e}")
        assert error < 2e-2, name


def run():
    a = parse(add_moe_arguments)
    if a.check:
        return check(a)
    model = GPT(a, block=MoEBlock)
    grouped = model.blocks[0].grouped
    label = f", {a.num_experts} experts of {a.moe_ffn_hidden_size} top-{a.moe_router_topk}" + \
        (f" + shared {a.moe_shared_expert_intermediate_size}" if a.moe_shared_expert_intermediate_size else "") + \
        (" (torch._grouped_mm)" if grouped else " (one expert after another)")
    main(a, model=model, flops=lambda a, batch: megatron_flops(a, batch, active_mlp_units(a)), label=label)


if __name__ == "__main__":
    run()
