"""Throughput of LLM generation on one GPU through the `transformers` backend's own path
(``model.generate`` on left-padded batches, top-p sampling, a dynamic KV cache, SDPA attention):
the rate at which an LLM operator (a rewrite, a generated pair) can run on a GPU node when vLLM is
not there. Models are the Qwen2.5-1.5B and -7B shapes with random weights (no weights reach the GPU
machine); every row generates exactly ``--new`` tokens (``min_new_tokens``), so the counts do not
depend on where random weights happen to emit an end token.

Usage: python benchmarks/generate_gpu.py [--shapes 1.5b 7b] [--batches 64 256] [--prompt 512] [--new 256]
       python benchmarks/generate_gpu.py --cpu-smoke    # a tiny model on CPU (for tests)

Printed per cell: generated tokens/s (prefill included, the wall time of generate()), rows/s at
that prompt and answer length, and peak GPU memory.
"""
import argparse
import time

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

SHAPES = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=True),
}


def cell(shape: str, batch: int, prompt: int, new: int, device: str, dtype: torch.dtype, repeats: int) -> dict:
    cfg = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, pad_token_id=0, eos_token_id=1)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, cfg.vocab_size, (batch, prompt), generator=g)
    # prompts of different lengths, as real rows are: a quarter of each row is left padding at most
    lengths = torch.randint(prompt * 3 // 4, prompt + 1, (batch,), generator=g)
    mask = (torch.arange(prompt)[None, :] >= prompt - lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    kwargs = dict(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=new,
                  min_new_tokens=new, do_sample=True, temperature=0.7, top_p=0.8, pad_token_id=0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):  # the first call warms up (kernels, allocator) and is not timed
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(**kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
    assert out.shape[1] == prompt + new
    sec = sum(times) / len(times)
    params = sum(p.numel() for p in model.parameters())
    del model
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"shape": shape, "params": params, "batch": batch, "prompt": prompt, "new": new, "seconds": sec,
            "tokens_per_s": batch * new / sec, "rows_per_s": batch / sec, "peak_gib": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["1.5b", "7b"], choices=sorted(SHAPES))
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--prompt", type=int, default=512, help="prompt tokens per row (a rewrite prompt and its row)")
    p.add_argument("--new", type=int, default=256, help="generated tokens per row")
    p.add_argument("--repeats", type=int, default=2, help="timed generate() calls per cell, after one warm-up")
    p.add_argument("--cpu-smoke", action="store_true", help="the tiny shape on CPU, to test this script")
    a = p.parse_args()
    if a.cpu_smoke:
        a.shapes, a.batches, a.prompt, a.new, a.repeats = ["tiny"], [4], 16, 8, 1
    device = "cuda" if torch.cuda.is_available() and not a.cpu_smoke else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}, transformers {__import__('transformers').__version__}")
    print("| shape | params | batch | prompt + new tokens | s per generate() | generated tokens/s | rows/s | "
          "peak GiB |\n|---|---|---|---|---|---|---|---|", flush=True)
    for shape in a.shapes:
        for batch in a.batches:
            x = cell(shape, batch, a.prompt, a.new, device, dtype, a.repeats)
            peak = "-" if x["peak_gib"] is None else f"{x['peak_gib']:.1f}"
            print(f"| {shape} | {x['params'] / 1e9:.2f} B | {batch} | {a.prompt} + {a.new} | {x['seconds']:.1f} | "
                  f"{x['tokens_per_s']:,.0f} | {x['rows_per_s']:.1f} | {peak} |", flush=True)


if __name__ == "__main__":
    main()
