"""The GPU evaluation fine-tune, on CPU: sequence packing that isolates samples
(autodp/evaluate/packing.py) and the DeepSpeed job (autodp/evaluate/ds_train.py) with the configs
of conf/finetune/qwen2.5-1.5b*.yaml, on tiny Qwen2 models built from a config (random weights)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

import autodp  # noqa: F401 - registers the config resolvers
from autodp.data.io import write_rows
from autodp.evaluate.ds_train import METRICS, launch_command, load_trained
from autodp.evaluate.finetune import answer_nll, build_trainer, encode, training_args
from autodp.evaluate.schedule import grad_accum, row_hash_order
from autodp.evaluate.packing import collate_packed, pack
from conftest import ROOT, SAMPLES

torch.set_num_threads(1)
# DeepSpeed compiles its CPU ops on first use (about a minute); keep them in the project cache.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
PAD = 0
MAX_LENGTH = 16


def tiny_qwen(attn: str, vocab: int = 50) -> Qwen2ForCausalLM:
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=PAD)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def samples():
    """Encoded samples as finetune.encode makes them: a masked prompt, then answer labels. The last
    one is trained on every token (as in pre-warming), so its first label is a real token."""
    g = torch.Generator().manual_seed(0)
    out = []
    for n, prompt in [(5, 2), (9, 4), (3, 1), (7, 3), (4, 0), (11, 5), (6, 0)]:
        ids = torch.randint(1, 50, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def bounds(pos):
    """(start, end) of each sample in a packed row, from its position ids."""
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    return list(zip(starts, starts[1:]))


def test_pack_keeps_samples_whole_and_restarts_positions(samples):
    rows = pack(samples, MAX_LENGTH)
    assert all(len(r["input_ids"]) <= MAX_LENGTH for r in rows)
    assert len(rows) == math.ceil(sum(len(s["input_ids"]) for s in samples) / MAX_LENGTH)  # first-fit fills them
    unpacked = []
    for r in rows:
        for a, b in bounds(r["position_ids"]):
            assert r["position_ids"][a:b] == list(range(b - a))
            assert r["labels"][a] == -100  # never predicted from the previous sample's last token
            unpacked.append(r["input_ids"][a:b])
    assert sorted(unpacked) == sorted(s["input_ids"] for s in samples)


def solo(model, s):
    """Logits and (summed loss, tokens) of one sample alone, the reference for packing."""
    ids, labels = torch.tensor([s["input_ids"]]), torch.tensor([s["labels"]])
    out = model(input_ids=ids, labels=labels)
    n = int((labels[0, 1:] != -100).sum())
    return out.logits[0], float(out.loss) * n, n


def by_sample(batch):
    """(row, start, end) of every sample in a collated packed batch (the padding tail excluded)."""
    for i, pos in enumerate(batch["position_ids"]):
        for a, b in bounds(pos.tolist()):
            if batch["input_ids"][i, a:b].ne(PAD).any():
                yield i, a, b


@pytest.mark.parametrize("attn", ["eager", "sdpa",
                                  # compiles its kernel on first use: ~20 s on 2 cores
                                  pytest.param("flex_attention", marks=pytest.mark.slow)])
@torch.no_grad()
def test_packed_samples_see_only_themselves(samples, attn):
    model = tiny_qwen(attn)
    rows = pack(samples, MAX_LENGTH)
    batch = collate_packed(rows, PAD, attn)
    assert len(rows) > 1 and batch["input_ids"].eq(PAD).any()  # more than one row, and a padding tail
    out = model(**batch)
    refs = {tuple(s["input_ids"]): solo(model, s) for s in samples}
    seen = 0
    for i, a, b in by_sample(batch):
        logits, _, _ = refs[tuple(batch["input_ids"][i, a:b].tolist())]
        torch.testing.assert_close(out.logits[i, a:b], logits, atol=1e-4, rtol=0)
        seen += 1
    assert seen == len(samples)
    loss_sum, tokens = sum(r[1] for r in refs.values()), sum(r[2] for r in refs.values())
    assert float(out.loss) == pytest.approx(loss_sum / tokens, abs=1e-5)


@torch.no_grad()
def test_without_the_document_mask_packed_samples_leak(samples):
    """The control for the test above: position ids restarting per sample do not isolate by
    themselves (the model's default causal mask spans the row), and the comparison sees it."""
    model = tiny_qwen("sdpa")
    batch = collate_packed(pack(samples, MAX_LENGTH), PAD, "sdpa")
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    worst = max(float((logits[i, a:b] - solo(model, {"input_ids": batch["input_ids"][i, a:b].tolist(),
                                                     "labels": [-100] * (b - a)})[0]).abs().max())
                for i, a, b in by_sample(batch) if a > 0)
    assert worst > 1e-2


def test_flash_attention_batch_is_one_row_with_sample_boundaries(samples):
    rows = pack(samples, MAX_LENGTH)
    batch = collate_packed(rows, PAD, "flash_attention_2")
    lengths = [b - a for r in rows for a, b in bounds(r["position_ids"])]
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    assert batch["cu_seq_lens_q"].tolist() == [sum(lengths[:k]) for k in range(len(lengths) + 1)]
    assert batch["max_length_q"] == max(lengths) == max(len(s["input_ids"]) for s in samples)
    assert batch["labels"][0, batch["cu_seq_lens_q"][:-1].long()].eq(-100).all()


# The GPU configs on CPU: no bf16 here, and a tiny model and batch; DeepSpeed settings untouched.
CPU = ["finetune.model.dtype=float32", "finetune.bf16=false", "finetune.max_length=96",
       "finetune.max_prompt_tokens=48", "finetune.batch_size=2", "finetune.global_batch_size=4",
       "+finetune.max_steps=6", "finetune.warmup_steps=0", "finetune.lr=3e-3", "finetune.logging_steps=1"]


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory, cmd_rows):
    """A local 'pretrained' folder: a tiny Qwen2 with random weights and a byte-level BPE tokenizer
    trained on the sample, with Qwen's special tokens. (AutoTokenizer loads a Qwen2 folder's
    tokenizer as Qwen2Tokenizer, which keeps the vocabulary but imposes Qwen's byte-level
    pre-tokenizer: a character tokenizer would not survive that.)"""
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator((r["instruction"] + r["input"] + r["output"] for r in cmd_rows), trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    model = tiny_qwen("sdpa", vocab=len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    text, reloaded = cmd_rows[0]["output"][:50], AutoTokenizer.from_pretrained(folder)
    assert reloaded.decode(reloaded(text)["input_ids"]) == text
    return folder


@pytest.mark.parametrize("order", ["row_hash", "shuffle"])
def test_row_hash_order_keeps_the_order_of_the_rows_two_datasets_share(tmp_path, tiny_pretrained, cmd_rows, order):
    rows, ids = cmd_rows[:40], lambda rs: [r["id"] for r in rs]
    kept = [r for i, r in enumerate(rows) if i % 5]  # what a strategy that drops a fifth of the rows trains on
    assert ids(row_hash_order(kept, 3)) == [i for i in ids(row_hash_order(rows, 3)) if i in set(ids(kept))]
    assert ids(row_hash_order(rows, 3)) != ids(row_hash_order(rows, 4))
    # the Trainer batches the rows in that order
    ft = OmegaConf.to_container(compose_cfg(f"finetune.order={order}", "finetune.batch_size=4").finetune, resolve=True)
    tok = AutoTokenizer.from_pretrained(tiny_pretrained)
    trainer = build_trainer(tiny_qwen("sdpa", vocab=len(tok)), tok, rows, ft, training_args(ft, str(tmp_path), seed=3))
    batched = [x for b in trainer.get_train_dataloader() for x in b["input_ids"].tolist()]
    wanted = encode(row_hash_order(rows, 3), tok, ft["template"], ft["max_length"], ft["max_prompt_tokens"])
    in_order = [x[:len(w["input_ids"])] == w["input_ids"] for x, w in zip(batched, wanted)]
    assert len(batched) == len(rows) and all(in_order) == (order == "row_hash")


def test_global_batch_gives_accumulation_per_world_size(monkeypatch):
    ft = OmegaConf.to_container(compose_cfg("finetune=qwen2.5-1.5b").finetune)
    assert (ft["global_batch_size"], ft["batch_size"], grad_accum(ft)) == (64, 2, 32)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert grad_accum(ft) == 8
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="not a multiple"):
        grad_accum(ft)


@pytest.mark.slow
@pytest.mark.parametrize("variant, stage, packing", [("qwen2.5-1.5b", 2, True), ("qwen2.5-1.5b-zero3", 3, False),
                                                     ("qwen2.5-1.5b-lora", 2, True)])
def test_deepspeed_job_trains_and_saves_what_is_scored(tmp_path, tiny_pretrained, cmd_rows, val_rows,
                                                       variant, stage, packing):
    ft = OmegaConf.to_container(compose_cfg(f"finetune={variant}", f"finetune.model.path={tiny_pretrained}",
                                            f"finetune.packing={packing}", *CPU, "finetune.max_length=192").finetune,
                                resolve=True)
    # Short samples (about 70 tokens), so that two share a packed row of 192.
    write_rows(tmp_path / "train.jsonl", [dict(r, instruction=r["instruction"][:20], input="", output=r["output"][:30])
                                          for r in cmd_rows[:64]])
    (tmp_path / "finetune.json").write_text(json.dumps(ft))
    out = tmp_path / "out"
    cmd = launch_command(tmp_path / "train.jsonl", tmp_path / "finetune.json", out, seed=0)
    assert "--nproc_per_node=1" in cmd  # no GPU here: one process
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]

    job = json.loads((out / METRICS).read_text())
    assert (job["engine"], job["zero_stage"], job["train_steps"]) == ("DeepSpeedEngine", stage, 6)
    assert job["train_rows"] <= 32 if packing else job["train_rows"] == 64
    assert all(math.isfinite(x) for x in job["losses"]) and job["losses"][-1] < job["losses"][0], job["losses"]
    assert (out / "adapter_config.json").exists() == (ft["lora"] is not None)
    trained, tok = load_trained(out, ft)
    base, _ = load_trained(tiny_pretrained, ft)
    val = val_rows[:32]
    assert answer_nll(trained, tok, val, ft)["nll_per_token"] < answer_nll(base, tok, val, ft)["nll_per_token"]


@pytest.mark.slow
def test_evaluator_runs_the_deepspeed_job(tmp_path, tiny_pretrained):
    from autodp.data.specs import data_specs
    from autodp.evaluate.evaluator import evaluate
    from autodp.evaluate.request import EvalRequest

    cfg = compose_cfg("finetune=qwen2.5-1.5b", f"finetune.model.path={tiny_pretrained}", *CPU,
                      "dataset.train_limit=64", "eval.val_limit=32", "eval.seeds=1")
    req = EvalRequest.from_config(cfg, *data_specs(cfg, tmp_path / "splits"), out_dir=str(tmp_path), seed=0)
    res = evaluate(req)
    assert res.status == "ok", res.traceback
    assert res.metrics["zero_stage"] == 2 and res.metrics["train_steps"] == 6 and math.isfinite(res.score)
    assert {"finetune", "load_model", "score"} <= set(res.timings)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ds_train.")] == []  # the saved model is gone


BENCH = ROOT / "benchmarks" / "finetune_gpu.py"


def test_gpu_benchmark_explains_itself():
    r = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "MFU" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
def test_gpu_benchmark_runs_its_cpu_smoke():
    r = subprocess.run([sys.executable, str(BENCH), "--cpu-smoke"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    cells = [[c.strip() for c in ln.split("|")[1:-1]] for ln in r.stdout.splitlines() if ln[:4] in ("| 2 ", "| 3 ")]
    assert [c[:2] for c in cells] == [["2", "False"], ["2", "True"], ["3", "False"], ["3", "True"]]
    assert all(float(c[8].replace(",", "")) > 0 for c in cells), r.stdout  # real tokens/s


@pytest.mark.slow
def test_compare_trains_each_arm_as_a_deepspeed_job_of_the_cluster_executor(tmp_path, tiny_pretrained):
    """task=compare with a DeepSpeed finetune config (LoRA, ZeRO-2) and cluster=submitit_local: each
    arm is a job that trains its final model with torchrun, merges the adapter, answers the test
    questions and scores their gold answers; the driver only tabulates and judges."""
    run_dir = tmp_path / "run"
    r = subprocess.run([sys.executable, "launch.py", "task=compare", "compare.arms=['raw=none',cleaning]",
                        "compare.questions=2", "compare.generation.max_tokens=8", "dataset.train_limit=32",
                        "finetune=qwen2.5-1.5b-lora", f"finetune.model.path={tiny_pretrained}", *CPU,
                        "cluster=submitit_local", "logger=none", f"hydra.run.dir={run_dir}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = json.loads((run_dir / "compare.json").read_text())
    assert list(out["arms"]) == ["raw", "cleaning"] and out["arms"]["cleaning"]["rows"] < 32
    jobs = [json.loads(x) for x in (run_dir / "jobs.jsonl").read_text().splitlines()]
    assert sorted(j["strategy"] for j in jobs) == ["cleaning", "raw"]  # one job per arm
    for arm in out["arms"].values():
        assert arm["trained"] and arm["generated"] == 2 and math.isfinite(arm["test_nll_per_char"])
        assert (Path(arm["model"]) / "config.json").exists() and not (Path(arm["model"]) / "adapter_config.json").exists()
    assert out["arms"]["raw"]["model"] != out["arms"]["cleaning"]["model"]
    assert "| raw | cleaning |" in (run_dir / "compare.md").read_text()
