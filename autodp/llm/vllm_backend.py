"""vLLM in this process (``pip install 'autodp[vllm]'`` on a CUDA machine): one engine, whole
batches at once. Without the extra, serve the model with `vllm serve` and use the openai backend."""
from __future__ import annotations

from typing import Any, Sequence

from autodp.llm.base import BackendUnavailable, Completion, Request
from autodp.resources import resolve_path


class VLLMBackend:
    def __init__(self, model: str, batch_size: int = 4096, **engine_kwargs: Any):
        try:
            import vllm
        except ImportError as e:
            raise BackendUnavailable(
                "llm backend 'vllm' needs vLLM, an optional extra for CUDA machines: "
                "pip install 'autodp[vllm]'. Or run `vllm serve MODEL` and use llm=openai_vllm.") from e
        self._vllm = vllm
        path = resolve_path(model)
        self.model_id = model
        # a hub id stays a hub id; a local folder is passed as a path
        self.llm = vllm.LLM(model=str(path) if path.exists() else model, **engine_kwargs)
        self.batch_size = batch_size

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        for chat in (True, False):
            idx = [i for i, r in enumerate(requests) if r.is_chat == chat]
            if not idx:
                continue
            params = [self._params(requests[i]) for i in idx]
            prompts = [requests[i].prompt for i in idx]
            results = (self.llm.chat(prompts, sampling_params=params, use_tqdm=False) if chat
                       else self.llm.generate(prompts, sampling_params=params, use_tqdm=False))
            for i, res in zip(idx, results):
                o = res.outputs[0]
                out[i] = Completion(o.text, "length" if o.finish_reason == "length" else "stop")
        return out  # type: ignore[return-value]  # every slot was filled

    def _params(self, req: Request) -> Any:
        s = req.sampling
        kwargs: dict[str, Any] = dict(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                      seed=req.seed, stop=list(s.stop) or None)
        if req.schema is not None:
            sp = self._vllm.sampling_params
            # vLLM renamed guided decoding to structured outputs (0.10.2)
            if hasattr(sp, "StructuredOutputsParams"):
                kwargs["structured_outputs"] = sp.StructuredOutputsParams(json=req.schema)
            else:
                kwargs["guided_decoding"] = sp.GuidedDecodingParams(json=req.schema)
        return self._vllm.SamplingParams(**kwargs)
