#!/usr/bin/env python3
"""Checkpoint-save measurements of issue #20 (run by scripts/device-ckpt-bench.sh on a GPU machine).

    python3 scripts/ckpt_bench.py ours LOG -- megatron pretrain-gpt ... --save DIR ...
    python3 scripts/ckpt_bench.py dcp DIR [--layers 24 --hidden 2048 --vocab 50304 --seq 2048]

`ours` runs the command, sampling its resident host memory (/proc) and the GPU memory it holds (nvidia-smi) every
50 ms, and reports from its log: each save's time in the training loop (the `save-checkpoint` timer: the whole save
when synchronous, the training stall with --async-save), the wall time from "saving checkpoint" to "successfully
saved" (the background write with --async-save), and the peak host and GPU memory while saving.

`dcp` builds the same state in PyTorch on the GPU (GPT 1.3B's parameters in bf16, their fp32 main copies and Adam's
two fp32 moments) and times `torch.distributed.checkpoint.save` of it (and the stall of `async_save` where this torch
runs it without a process group), with the peak host and GPU memory.
Each prints one JSON line.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def gpu_bytes(pid):
    """The GPU memory process `pid` holds, per nvidia-smi (0 when it reports none)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    for line in out.splitlines():
        fields = [x.strip() for x in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid) and fields[1].isdigit():
            return int(fields[1]) * 2**20
    return 0


class Sampler(threading.Thread):
    """Samples (time, host bytes, GPU bytes) of `pid` until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.running = pid, [], True

    def run(self):
        while self.running:
            self.samples.append((time.monotonic(), rss_bytes(self.pid), gpu_bytes(self.pid)))
            time.sleep(0.05)

    def peak(self, start=None, end=None):
        window = [s for s in self.samples if (start is None or s[0] >= start) and (end is None or s[0] <= end)]
        return {"host_gib": round(max((s[1] for s in window), default=0) / 2**30, 2),
                "gpu_gib": round(max((s[2] for s in window), default=0) / 2**30, 2)}


def ours(log_path, command):
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    sampler = Sampler(proc.pid)
    sampler.start()
    saves, timers, starting = [], [], {}
    with open(log_path, "w") as log:
        for line in proc.stdout:
            now = time.monotonic()
            log.write(line)
            saving = re.search(r"saving checkpoint at iteration +(\d+)", line)
            saved = re.search(r"successfully saved checkpoint from iteration +(\d+)", line)
            if saving:
                starting[saving.group(1)] = now
            elif saved and saved.group(1) in starting:
                start = starting.pop(saved.group(1))
                saves.append({"iteration": int(saved.group(1)), "write_s": round(now - start, 3),
                              **{"peak_while_saving_" + k: v for k, v in sampler.peak(start, now).items()}})
            timer = re.search(r"save-checkpoint[ .]*: \(([\d.]+), ([\d.]+)\)", line)
            if timer:
                timers.append(float(timer.group(2)) / 1000)
    code = proc.wait()
    sampler.running = False
    for save, seconds in zip(saves, timers):
        save["in_training_loop_s"] = round(seconds, 3)
    print(json.dumps({"exit": code, "saves": saves, "save_timer_s": timers, "peak_run": sampler.peak()}))


def gpt_state(layers, hidden, vocab, seq, device):
    """GPT's parameters (bf16) with fp32 main copies and Adam's moments, by name, on `device`."""
    import torch
    shapes = {"embedding.word_embeddings.weight": (vocab, hidden), "embedding.position_embeddings.weight": (seq, hidden),
              "decoder.final_layernorm.weight": (hidden,), "decoder.final_layernorm.bias": (hidden,)}
    layer = {"input_layernorm.weight": (hidden,), "input_layernorm.bias": (hidden,),
             "self_attention.linear_qkv.weight": (3 * hidden, hidden), "self_attention.linear_qkv.bias": (3 * hidden,),
             "self_attention.linear_proj.weight": (hidden, hidden), "self_attention.linear_proj.bias": (hidden,),
             "pre_mlp_layernorm.weight": (hidden,), "pre_mlp_layernorm.bias": (hidden,),
             "mlp.linear_fc1.weight": (4 * hidden, hidden), "mlp.linear_fc1.bias": (4 * hidden,),
             "mlp.linear_fc2.weight": (hidden, 4 * hidden), "mlp.linear_fc2.bias": (hidden,)}
    for i in range(layers):
        shapes.update({f"decoder.layers.{i}.{k}": v for k, v in layer.items()})
    state = {}
    for name, shape in shapes.items():
        state["model." + name] = torch.randn(shape, device=device, dtype=torch.bfloat16)
        for kind in ("fp32_param", "exp_avg", "exp_avg_sq"):
            state[f"optimizer.state.{kind}.{name}"] = torch.randn(shape, device=device, dtype=torch.float32)
    return state


def dcp(directory, layers, hidden, vocab, seq):
    import resource
    import shutil
    import torch
    import torch.distributed.checkpoint as dcp_api
    gpu = torch.cuda.is_available()  # (without one, a dry run of the script on the host)
    state = gpt_state(layers, hidden, vocab, seq, "cuda" if gpu else "cpu")
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    total = sum(t.numel() * t.element_size() for t in state.values())
    start = time.perf_counter()
    dcp_api.save(state, checkpoint_id=os.path.join(directory, "sync"))
    result = {"state_gib": round(total / 2**30, 2), "sync_save_s": round(time.perf_counter() - start, 3),
              "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
              "peak_host_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    shutil.rmtree(os.path.join(directory, "sync"), ignore_errors=True)
    try:
        start = time.perf_counter()
        future = dcp_api.async_save(state, checkpoint_id=os.path.join(directory, "async"))
        result["async_stall_s"] = round(time.perf_counter() - start, 3)
        future.result()
        result["async_total_s"] = round(time.perf_counter() - start, 3)
    except Exception as error:  # async_save needs a process group on some torch versions
        result["async_error"] = str(error)[:200]
    shutil.rmtree(os.path.join(directory, "async"), ignore_errors=True)
    print(json.dumps(result))


def main():
    if len(sys.argv) > 3 and sys.argv[1] == "ours" and sys.argv[3] == "--":
        ours(sys.argv[2], sys.argv[4:])
    elif len(sys.argv) > 2 and sys.argv[1] == "dcp":
        import argparse
        parser = argparse.ArgumentParser()
        for name, default in [("layers", 24), ("hidden", 2048), ("vocab", 50304), ("seq", 2048)]:
            parser.add_argument("--" + name, type=int, default=default)
        a = parser.parse_args(sys.argv[3:])
        dcp(sys.argv[2], a.layers, a.hidden, a.vocab, a.seq)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
