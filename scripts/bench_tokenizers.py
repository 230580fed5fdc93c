#!/usr/bin/env python3
"""Single-thread encoding speed of the reference tokenizers (tiktoken, Hugging Face tokenizers, sentencepiece) on a
JSONL corpus, printed like `megatron bench tokenizer` so the numbers compare line by line.

    python3 scripts/bench_tokenizers.py [--input ../shared/data/corpus/docs-3mb.jsonl] [--shared ../shared/data]
        [--repeats 3]

The SentencePiece models are MegatronDataTests' fixtures (a 512-piece BPE and a 400-piece unigram model):
    megatron bench tokenizer --input docs-3mb.jsonl --tokenizer-type Llama2Tokenizer \
        --tokenizer-model Tests/MegatronDataTests/Fixtures/tokenizers/sentencepiece/bpe_llama.model
"""
import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sentencepiece  # noqa: E402
import tiktoken  # noqa: E402
from tiktoken.load import load_tiktoken_bpe  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SENTENCEPIECE = ROOT / "Tests" / "MegatronDataTests" / "Fixtures" / "tokenizers" / "sentencepiece"
CL100K_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""


def bench(name, encode, documents, repeats):
    size = sum(len(d.encode()) for d in documents)
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = sum(len(encode(d)) for d in documents)
        best = min(best, time.perf_counter() - start)
    print(f"{name}: {len(documents)} documents, {size / 1e6:.2f} MB, {tokens} tokens in {best:.3f} s: "
          f"{tokens / best:.0f} tokens/s, {size / 1e6 / best:.2f} MB/s (one thread)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", default=str(SHARED / "corpus" / "docs-3mb.jsonl"))
    parser.add_argument("--shared", default=str(SHARED), help="the shared data folder (tokenizer files)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    documents = [json.loads(line)["text"] for line in open(args.input, encoding="utf-8") if line.strip()]

    shared = Path(args.shared)
    ranks = load_tiktoken_bpe(str(shared / "tokenizers" / "cl100k_base.tiktoken"))
    cl100k = tiktoken.Encoding("cl100k_local", pat_str=CL100K_PATTERN, mergeable_ranks=ranks,
                               special_tokens={"<|endoftext|>": 100257})
    bench("tiktoken cl100k", lambda d: cl100k.encode(d, allowed_special="all"), documents, args.repeats)

    hf = Tokenizer.from_file(str(shared / "tokenizers" / "bytelevel-bpe-8k" / "tokenizer.json"))
    bench("HF tokenizers bytelevel-bpe-8k", lambda d: hf.encode(d).ids, documents, args.repeats)

    for name in ("bpe_llama", "unigram_rules"):
        sp = sentencepiece.SentencePieceProcessor(model_file=str(SENTENCEPIECE / f"{name}.model"))
        bench(f"sentencepiece {name}", sp.encode_as_ids, documents, args.repeats)


if __name__ == "__main__":
    main()
