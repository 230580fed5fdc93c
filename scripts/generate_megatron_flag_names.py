#!/usr/bin/env python3
"""Writes Megatron-LM's command-line flags into Swift source files, as a table pretrain-gpt reads at run time.

For each flag: its spellings, argparse dest, group, action, default, choices, and the feature it belongs to.
pretrain-gpt uses the table to tell a Megatron flag it does not support yet (refused with its feature, all such
flags of a command line in one error) from a misspelling (answered with the nearest spellings), to skip the
value words of a refused flag, to group `--help` as Megatron's argparse groups, to resolve Megatron's aliases
(`--disable-foo` for `--no-foo`), and to read Megatron's YAML (whose keys are argparse dests).

The feature of a flag is the first FEATURES pattern its name matches, else its group's entry in
GROUP_FEATURES, else "other <group> options". Input: ../shared/reference/megatron-args.json, a dump of
megatron/training/arguments.py, found in the first shared/reference/ above the package root (or given as the
first argument).

Output: one table per argparse group, the groups gathered by theme into MegatronFlagTable+<Theme>.swift (THEMES),
and MegatronFlagTable.swift listing the groups in the dump's order (--help lists them in that order).
"""
import json
import pathlib
import re
import signal
import sys

# Feature of a flag by its name; the first match wins. Patterns are anchored at the start of the name.
FEATURES = [
    (r"--(num-experts|moe-|expert-|overlap-moe|ep-overlap|overlap-dispatch|use-grouped-gemm-for-shared"
     r"|high-priority-a2a|gtp-expert)", "mixture of experts"),
    (r"--(pipeline-model-parallel|num-layers-per-virtual|num-virtual-stages|decoder-first-pipeline"
     r"|decoder-last-pipeline|account-for-|overlap-p2p|no-overlap-p2p|microbatch-group-size"
     r"|use-ring-exchange-p2p|use-tp-pp-dp-mapping)", "pipeline parallelism"),
    (r"--(context-parallel|cp-comm|hierarchical-context|hybrid-context|max-seqlen-per-dp-cp)", "context parallelism"),
    (r"--(fp8|no-fp8|first-last-layers-bf16|num-layers-at-|keep-fp8|reuse-grad-buf-for-mxfp8|te-precision)", "FP8"),
    (r"--fp4", "FP4"),
    (r"--(multi-latent-attention|q-lora-rank|kv-lora-rank|qk-head-dim|qk-pos-emb-head-dim|v-head-dim|cache-mla"
     r"|mla-)", "multi-latent attention"),
    (r"--(ckpt-|no-ckpt-|auto-detect-ckpt|async-|use-persistent-ckpt|dist-ckpt|distrib-optim-fully|use-dist-ckpt"
     r"|non-persistent|no-strict-fsdp-dtensor|replication|verify-integrity|use-mp-args-from|no-save-tokenizer)",
     "checkpoint formats (--ckpt-format)"),
    (r"--wandb-", "Weights & Biases logging (use --tensorboard-dir)"),
    (r"--log-energy", "energy logging (NVML energy counters)"),
    (r"--log-max-attention-logit", "maximum attention logit logging"),
    (r"--log-straggler", "straggler detection"),
    (r"--grad-reduce-in-bf16", "bf16 gradient accumulation and reduction"),
    (r"--disable-bf16-reduced-precision-matmul", "cuBLAS reduced-precision bf16 accumulation control"),
    (r"--(tp-comm|no-tp-comm|disable-tp-comm)", "tensor-parallel communication overlap"),
    (r"--(enable-cuda-graph|external-cuda-graph|cuda-graph|optimizer-cuda-graph|inference-cuda-graph"
     r"|decode-only-cuda-graphs)", "CUDA graphs"),
    (r"--(use-megatron-fsdp|use-torch-fsdp2|megatron-fsdp|fsdp|torch-fsdp2|data-parallel-sharding"
     r"|outer-dp-sharding|enable-full-sharding|suggested-communication-unit|no-use-layer-wise-param)", "FSDP"),
    (r"--mtp-", "multi-token prediction"),
    (r"--(is-hybrid-model|hybrid-layer|hybrid-override|mamba-|disable-mamba|gdp-)", "hybrid Mamba models"),
    (r"--(use-mup|mup-)", "maximal update parametrization (muP)"),
    (r"--(muon|lion)", "Muon and Lion optimizers"),
    (r"--(dsa-|experimental-attention|linear-)", "experimental attention variants"),
    (r"--(yarn-|no-yarn-|rope-scaling|use-rope-scaling|rotary-scaling|mscale|no-rope-freq|mrope|rotary-seq-len)",
     "RoPE scaling"),
    (r"--(cpu-offloading|optimizer-cpu-offload|optimizer-offload|use-torch-optimizer-for-cpu|overlap-cpu-optimizer"
     r"|fine-grained-activation-offloading|offload-modules|min-offloaded|delay-offload|delta-offload"
     r"|activation-offload|fine-grained-offloading|no-pin-cpu)", "CPU offloading"),
    (r"--(profile|use-pytorch-profiler|pytorch-profiler|record-memory-history|memory-snapshot|record-shapes"
     r"|nvtx)", "profiling"),
    (r"--fim-", "fill-in-the-middle data"),
    (r"--(log-|no-log-|timing-log|tensorboard-|logging-level|no-barrier-with-level-1)", "logging"),
    (r"--(use-precision-aware|main-grads-dtype|main-params-dtype|exp-avg)", "precision-aware optimizer"),
    (r"--(window-size|window-attn)", "sliding-window attention"),
    (r"--(relative-attention|position-embedding-type)", "position embeddings"),
    (r"--(enable-mhc|mhc-)", "hyper-connections"),
    (r"--(manual-gc|exit-)", "training loop options"),
    (r"--(rampup-batch-size|step-batch-size-schedule|decrease-batch-size)", "batch-size ramp-up"),
]

GROUP_FEATURES = {
    "inference": "inference and the text-generation server",
    "rl": "reinforcement learning",
    "vision": "vision models",
    "biencoder": "retrieval (biencoder) models",
    "In-process restart": "in-process restart",
    "ft_package": "fault tolerance (nvidia-resiliency-ext)",
    "straggler": "straggler detection",
    "rerun engine": "the rerun engine",
    "one logger": "OneLogger telemetry (use --tensorboard-dir)",
    "opentelemetry": "OpenTelemetry",
    "workload inspector": "the workload inspector",
    "msc": "multi-storage client",
    "autoresume": "ADLR autoresume",
    "sft": "supervised fine-tuning",
    "Logits Distillation": "logits distillation",
    "fault injector": "fault injection",
    "heterogeneous architecture": "heterogeneous layer configs",
    "mla": "multi-latent attention",
    "moe": "mixture of experts",
    "Transformer-Engine": "FP8",
    "experimental_attention_variant": "experimental attention variants",
    "experimental": "experimental options",
}

# The files the group tables go to: a theme and its argparse groups. Every group of the dump but argparse's own
# "options" (it holds only --help) must be in one.
THEMES = {
    "Model": ["transformer configuration", "network size", "regularization", "moe", "mla",
              "experimental_attention_variant", "heterogeneous architecture", "Transformer-Engine", "experimental"],
    "Training": ["training", "RNG and initialization", "learning rate and weight decay", "mixed precision", "validation"],
    "Checkpointing": ["checkpointing", "msc"],
    "Distributed": ["distributed init"],
    "Data": ["data and dataloader", "tokenizer"],
    "Logging": ["logging", "profiling", "one logger", "opentelemetry", "workload inspector"],
    "Applications": ["rl", "inference", "biencoder", "vision", "Logits Distillation", "sft"],
    "Resilience": ["autoresume", "straggler", "In-process restart", "ft_package", "rerun engine", "fault injector"],
}

ACTIONS = {
    "_StoreTrueAction": "true",
    "_StoreFalseAction": "false",
    "BooleanOptionalAction": "toggle",
}


def feature(name, group):
    for pattern, label in FEATURES:
        if re.match(pattern, name):
            return label
    return GROUP_FEATURES.get(group, f"other {group} options")


def action(entry):
    if entry["action"] in ACTIONS:
        return ACTIONS[entry["action"]]
    return "value" if entry["nargs"] is None else "list"


def text(value):
    """A default or choice as pretrain-gpt shows it: Python's None is the empty field."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(text(v) for v in value)
    value = str(value)
    # --attention-backend takes an AttnBackend member's name; argparse shows the enum.
    match = re.fullmatch(r"<?AttnBackend\.(\w+)(: \d+>)?", value)
    return match.group(1) if match else value


def signal_names(entry):
    """--exit-signal takes a signal.Signals member's name (SIGTERM); the dump holds the members' numbers."""
    if entry["dest"] != "exit_signal":
        return entry
    name = lambda number: signal.Signals(int(number)).name
    return dict(entry, default=name(entry["default"]), choices=[name(c) for c in entry["choices"]])


def identifier(group):
    """A group's Swift name: "In-process restart" -> inProcessRestart."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", group) if w]
    return words[0].lower() + "".join(w[0].upper() + w[1:] for w in words[1:])


HEADER = "// Generated by scripts/generate_megatron_flag_names.py from Megatron-LM's argument dump; do not edit."


def theme_file(theme, tables):
    lines = [HEADER, "", "extension MegatronFlagTable {"]
    for group, rows in tables:
        lines += [f"    /// The argparse group \"{group}\".", f'    static let {identifier(group)} = #"""']
        lines += ["        " + row for row in rows] + ['        """#', ""]
    return "\n".join(lines[:-1] + ["}", ""])


def index_file(groups):
    lines = [
        HEADER,
        "",
        "/// Megatron-LM's flags, one a line, tab-separated: spellings, dest, group, action (true / false / toggle /",
        "/// value / list), default (empty for None, else `=` and the value), choices, feature. One table per argparse",
        "/// group (in MegatronFlagTable+<theme>.swift), listed in Megatron's order.",
        "enum MegatronFlagTable {",
        "    static let groups = [",
    ] + [f"        {identifier(group)}," for group in groups] + ["    ]", "}", ""]
    return "\n".join(lines)


root = pathlib.Path(__file__).resolve().parent.parent
if len(sys.argv) > 1:
    dump = pathlib.Path(sys.argv[1])
else:
    dump = next(d / "shared/reference/megatron-args.json" for d in root.parents
                if (d / "shared/reference/megatron-args.json").exists())
entries = json.loads(dump.read_text())
rows = {}
for entry in map(signal_names, entries):
    names = [name for name in entry["flags"] if name.startswith("--")]
    if entry["dest"] == "help":
        continue
    row = [" ".join(names), entry["dest"], entry["group"], action(entry),
           ("=" + text(entry["default"])) if entry["default"] is not None else "",
           " ".join(text(c) for c in entry["choices"] or []), feature(names[0], entry["group"])]
    assert all("\t" not in field and "\n" not in field for field in row), row
    assert '"""#' not in "\t".join(row), row
    rows.setdefault(entry["group"], []).append("\t".join(row))

# --help lists the groups in the dump's order: each group's rows must be one run for the tables to keep it.
runs = [group for i, group in enumerate(e["group"] for e in entries) if i == 0 or entries[i - 1]["group"] != group]
assert len(runs) == len(set(runs)), "an argparse group's flags are not consecutive in the dump"
themed = [group for groups in THEMES.values() for group in groups]
assert sorted(themed) == sorted(rows), f"groups without a theme: {set(rows) - set(themed)}; unknown: {set(themed) - set(rows)}"
assert len({identifier(group) for group in rows}) == len(rows)
folder = root / "Sources/MegatronTraining/Arguments"
files = {folder / "MegatronFlagTable.swift": index_file(list(rows))}
for theme, groups in THEMES.items():
    files[folder / f"MegatronFlagTable+{theme}.swift"] = theme_file(theme, [(group, rows[group]) for group in groups])
for path, content in files.items():
    path.write_text(content)
print(f"{sum(map(len, rows.values()))} flags in {len(rows)} groups -> {len(files)} files in {folder.relative_to(root)}")
