"""The vLLM backend against the HF backend on the real default model (SmolLM2-135M, fp32).

Marked `vllm`: `make test` runs them in .venv-vllm (`-m vllm`), where a missing vLLM is an error,
never a skip; the main .venv deselects them (`-m "not vllm"`). One engine of each kind serves the
whole session (each start costs ~40 s on 2 cores).
"""
from __future__ import annotations

import numpy as np
import pytest

from toolformer.corpus.syntax import TOOLFORMER
from toolformer.pipeline.filter import Scorer, scored_record
from toolformer.pipeline.sample import Sampler, call_opening
from toolformer.config import SampleSettings
from toolformer.tools import get_tool

DOCS = [" Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "Natalia sold 48 + 24 = 72 clips altogether in April and May.",
        " Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "Weng earns 12 / 60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10."]
RTOL = 1e-3


def test_backend_choices_are_the_registered_backends():
    from toolformer.config import RunSettings
    from toolformer.lm import vllm  # noqa: F401 - registers "vllm" without importing vLLM itself
    from toolformer.lm.backend import BACKENDS
    import dataclasses
    field = next(f for f in dataclasses.fields(RunSettings) if f.name == "backend")
    assert tuple(field.metadata["choices"]) == tuple(BACKENDS.names())


@pytest.fixture(scope="session")
def vllm_backend():
    import vllm  # noqa: F401 - an ImportError here is an error of the vllm run, never a skip
    from toolformer.lm.vllm import VLLMBackend, shutdown_engines
    yield VLLMBackend.from_ref("smollm2-135m-instruct")
    shutdown_engines()


@pytest.fixture(scope="session")
def hf():
    from toolformer.lm.hf import HFBackend
    return HFBackend.from_ref("smollm2-135m-instruct", device="cpu")


@pytest.fixture(scope="session")
def calculator():
    return get_tool("calculator")


def windows(lm, calculator):
    """(prompt ids, window ids) of each document with the calculator's few-shot prompt."""
    from toolformer.tools import load_prompt
    head, tail = load_prompt(calculator).split("{input}")
    return [(lm.start_ids + lm.encode(head + d + tail), lm.encode(d)) for d in DOCS]


@pytest.mark.vllm
def test_marker_probabilities_equal_hf_at_every_position(vllm_backend, hf, calculator):
    sampler = Sampler(hf, calculator, TOOLFORMER, SampleSettings().for_tool(calculator))
    seqs, first = zip(*[(p + x, len(p)) for p, x in windows(hf, calculator)])
    want = hf.next_token_logprobs(list(seqs), list(first), sampler.markers)
    got = vllm_backend.next_token_logprobs(list(seqs), list(first), sampler.markers)
    again = vllm_backend.next_token_logprobs(list(seqs), list(first), sampler.markers)  # prefix cache warm
    for w, g, a in zip(want, got, again):
        assert g.shape == w.shape
        np.testing.assert_allclose(np.exp(g), np.exp(w), rtol=RTOL, atol=0)
        np.testing.assert_allclose(a, g, rtol=0, atol=1e-4)
    # exact far outside any top-20: positions where p(<API>) is tiny are compared too
    assert min(np.exp(w).min() for w in want) < 1e-5


def split_threshold(usefulness: list[float]) -> float:
    """A τ_f between two neighbouring values of the middle third (the widest gap there): half the calls
    are kept or so, and none lies within float noise of the threshold. The 135M model gains little
    from a call, so the calculator's τ_f = 0.5 would keep none and prove nothing."""
    u = sorted(usefulness)
    third = len(u) // 3
    j = max(range(third, len(u) - third - 1), key=lambda j: u[j + 1] - u[j])
    assert u[j + 1] - u[j] > 1e-3
    return (u[j] + u[j + 1]) / 2


@pytest.mark.vllm
def test_losses_and_kept_calls_equal_hf(vllm_backend, hf, calculator):
    items = []
    for d, (_, x) in enumerate(windows(hf, calculator)):
        for i in range(2, len(x) - 1, 3):
            items += [((d, 0), x, i, "48 / 2", "24"), ((d, 0), x, i, "48 + 24", "72"),
                      ((d, 0), x, i, "12 / 60", "0.2"), ((d, 0), x, i, "3 * 7", "21")]
    want = Scorer(hf, calculator, TOOLFORMER).score(items)
    got = Scorer(vllm_backend, calculator, TOOLFORMER).score(items)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=RTOL, atol=0)
    tau_f = split_threshold([min(e, r) - p for p, e, r in want])
    kept = [[scored_record({"error": None}, losses, tau_f)["kept"] for losses in run] for run in (want, got)]
    assert kept[0] == kept[1]
    assert 0 < sum(kept[0]) < len(items)


@pytest.mark.vllm
def test_seeded_samples_do_not_depend_on_the_batch(vllm_backend, calculator):
    lm = vllm_backend
    (prompt, x), _ = windows(lm, calculator)
    marker = lm.encode(" [")[0]
    prefixes = [prompt + x[:i] + call_opening(lm, TOOLFORMER, calculator, marker) for i in (10, 14, 20, 26)]
    seeds = [11, 12, 13, 14]
    stop = TOOLFORMER.stop_strings()
    together = lm.sample(prefixes, seeds, stop, max_new_tokens=16)
    alone = [lm.sample([p], [s], stop, max_new_tokens=16)[0] for p, s in zip(prefixes, seeds)]
    shuffled = lm.sample(prefixes[::-1] + prefixes, seeds[::-1] + [1, 2, 3, 4], stop, max_new_tokens=16)
    assert together == alone == shuffled[:4][::-1]
    assert [s.text for s in shuffled[4:]] != [s.text for s in together]  # the seed chooses the sample
    closed = [s for s in together + shuffled if s.stop is not None]
    assert closed and all(s.stop in stop and s.stop not in s.text for s in closed)


@pytest.mark.vllm
def test_seeded_samples_of_prompts_longer_than_one_engine_step(vllm_backend):
    """Three distinct 1,500-token prompts exceed vLLM's 4,096 tokens per step: with chunked
    prefill, vLLM 0.32 rewinds a seeded request's generator, which fails on CPU."""
    lm = vllm_backend
    prefixes = [lm.start_ids + [1000 + 7 * r + t % 97 for t in range(1500)] for r in range(3)]
    together = lm.sample(prefixes, [5, 6, 7], ["]"], max_new_tokens=4)
    assert together == [lm.sample([p], [s], ["]"], max_new_tokens=4)[0] for p, s in zip(prefixes, [5, 6, 7])]


@pytest.mark.vllm
def test_decoding_with_a_tool_call_writes_what_hf_writes(vllm_backend, hf, calculator):
    from toolformer.inference import ToolBox, ToolDecoder
    from toolformer.tools import load_prompt
    head, tail = load_prompt(calculator).split("{input}")
    starts = ["Natalia sold 48 clips in April and half as many in May. In May she sold",
              "Weng earns $12 an hour. For 50 minutes of babysitting she earns"]
    prompts = [head + s + tail + " " + s for s in starts]  # the few-shot prompt: the model writes calls
    runs = [ToolDecoder(lm, TOOLFORMER, ToolBox(["calculator"])).generate(prompts, max_new_tokens=24)
            for lm in (hf, vllm_backend)]
    assert [g.output for g in runs[1]] == [g.output for g in runs[0]]
    assert [g.calls for g in runs[1]] == [g.calls for g in runs[0]]
    assert all(g.calls and g.calls[0]["result"] for g in runs[0])  # each row ran the tool mid-decoding
