"""The GPU evaluation fine-tune, on CPU: sequence packing that isolates samples
(autodp/evaluate/packing.py), on tiny Qwen2 models built from a config (random weights)."""
import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from autodp.evaluate.packing import collate_packed, pack

torch.set_num_threads(1)
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

