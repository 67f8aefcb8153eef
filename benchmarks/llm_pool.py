"""LLM generation in this process against a pool of Ray actors (``process=ray``'s ``llm.actors``):
the same uncached prompts through the conf/llm client, once with its backend here and once with a
pool of 1 and 2 actors, each holding that backend. Prints wall seconds, prompts/s and whether the
answers are identical to this process's.

Usage: python benchmarks/llm_pool.py [--llm smollm2] [--prompts 32] [--batch 4] [--max-tokens 48]
                                     [--actors 1 2]

The prompts are English questions of the shipped CMD rows' shape (SmolLM2 is English-centric);
the answer cache is off, so every prompt is generated in every arm.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from autodp.llm.client import build_client  # noqa: E402
from autodp.process.ray_llm import pooled  # noqa: E402

TOPICS = ["a sore throat", "high blood pressure", "a sprained ankle", "insomnia", "a fever in a child",
          "back pain", "seasonal allergies", "a migraine"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llm", default="smollm2", help="a conf/llm config")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch", type=int, default=4, help="the backend's batch_size (one slice per actor call)")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    a = p.parse_args()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        llm = compose("config", overrides=[f"llm={a.llm}"]).llm
    client = {**OmegaConf.to_container(llm.client, resolve=True), "cache": False, "batch_size": a.batch,
              "max_tokens": a.max_tokens}
    prompts = [[{"role": "user", "content": f"Patient question {i}: what should I do about {TOPICS[i % len(TOPICS)]}?"}]
               for i in range(a.prompts)]
    here = build_client(client)
    t0 = time.perf_counter()
    ref = here.complete(prompts)
    base = time.perf_counter() - t0
    print(f"model {here.model}, {a.prompts} prompts, batches of {a.batch}, {a.max_tokens} new tokens at most")
    print("| where | wall s (model loads aside) | prompts/s | speed-up | answers identical |\n|---|---|---|---|---|")
    print(f"| this process | {base:.1f} | {a.prompts / base:.2f} | 1.00 | - |", flush=True)
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    for n in a.actors:
        with pooled(ray, client, actors=n, cpus=1, gpus=0) as pool:
            t0 = time.perf_counter()
            got = pool.complete(prompts)
            sec = time.perf_counter() - t0
        print(f"| {n} Ray actor{'s' * (n > 1)} | {sec:.1f} | {a.prompts / sec:.2f} | {base / sec:.2f} | {got == ref} |",
              flush=True)


if __name__ == "__main__":
    main()
