# The model configs the device benchmarks time (sourced by device-train-bench.sh, device-fp8-bench.sh and
# device-ckpt-bench.sh), as Megatron flags: GPT-2 124M, GPT 1.3B and a LLaMA-style 1B. `llama_ours` holds the flags only `megatron`
# takes (scripts/bench_torch_gpt.py reads GQA from --num-query-groups and drops biases with --swiglu).
common="--bf16 --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --hidden-dropout 0 --attention-dropout 0"
gpt2="--num-layers 12 --hidden-size 768 --num-attention-heads 12 --seq-length 1024 --max-position-embeddings 1024 --micro-batch-size 16"
gpt13="--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048 --micro-batch-size 4"
llama="--num-layers 16 --hidden-size 2048 --num-attention-heads 32 --num-query-groups 8 --ffn-hidden-size 8192 --swiglu
  --normalization RMSNorm --position-embedding-type rope --untie-embeddings-and-output-weights --seq-length 2048 --micro-batch-size 4"
llama_ours="--group-query-attention --disable-bias-linear --max-position-embeddings 2048"

# The flags of config NAME as `megatron bench train` takes them.
megatron_flags() { local extra=""; [ "$1" = llama ] && extra=$llama_ours; echo ${!1} $extra $common; }
# The flags of config NAME as scripts/bench_torch_gpt.py takes them (it has no --max-position-embeddings).
torch_flags() { echo ${!1} | sed 's/--max-position-embeddings [0-9]*//'; }
