"""The backend's shared-prefix cache: a prompt every row shares is encoded once, and nothing a
stage reads changes because of it. Sampling: contexts held once, slots refilled, stop strings
searched only after tokens that may end one, bfloat16 copies: samples equal plain decoding."""
import numpy as np
import pytest
import torch

from conftest import tiny_llama
from toolformer.lm.backend import Sample
from toolformer.lm.hf import HFBackend, _check_stop


@pytest.fixture()
def backends(tiny_backend):
    """The session's tiny backend twice over the same weights: sharing on (fresh cache) and off."""
    on = HFBackend(tiny_backend.model, tiny_backend.tokenizer, max_batch_tokens=256, max_sample_tokens=2048)
    off = HFBackend(tiny_backend.model, tiny_backend.tokenizer, max_batch_tokens=256, max_sample_tokens=2048)
    off.SHARED_MIN = 10 ** 9
    return on, off


def sequences(rng, prompt_len: int, tails: list[int]) -> list[list[int]]:
    prompt = rng.integers(5, 2000, prompt_len).tolist()
    return [prompt + rng.integers(5, 2000, n).tolist() for n in tails]


def test_token_logprobs_with_a_shared_prompt_equal_the_plain_pass(backends):
    on, off = backends
    rng = np.random.default_rng(0)
    seqs = sequences(rng, 100, [3, 40, 17, 80])  # lengths differ: right padding after the prefix
    targets = [list(range(101, len(s))) for s in seqs]
    for got, want in zip(on.token_logprobs(seqs, targets), off.token_logprobs(seqs, targets)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert [len(k) for k in on._prefix_kv] == [100] and not off._prefix_kv
    # a target inside the prompt caps the shared part: its row must be computed
    capped = [t if r else [80] + t for r, t in enumerate(targets)]
    for got, want in zip(on.token_logprobs(seqs, capped), off.token_logprobs(seqs, capped)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert sorted(len(k) for k in on._prefix_kv) == [79, 100]


def test_the_kept_prefix_serves_the_next_call(backends):
    on, _ = backends
    rng = np.random.default_rng(1)
    seqs = sequences(rng, 90, [10, 20])
    on.token_logprobs(seqs, [[95], [95]])
    kept = on._prefix_kv[tuple(seqs[0][:90])]
    later = [seqs[0][:90] + [7, 8, 9], seqs[0][:90] + [9, 8]]
    on.token_logprobs(later, [[91], [91]])
    assert len(on._prefix_kv) == 1 and on._prefix_kv[tuple(seqs[0][:90])] is kept


def test_short_common_prefixes_and_single_rows_are_not_cached(backends):
    on, _ = backends
    rng = np.random.default_rng(2)
    on.token_logprobs(sequences(rng, on.SHARED_MIN - 1, [5, 6]), [[3], [3]])
    on.token_logprobs(sequences(rng, 200, [5]), [[3]])
    assert not on._prefix_kv


def test_position_scores_and_samples_from_retained_caches_are_unchanged(backends):
    on, off = backends
    rng = np.random.default_rng(3)
    seqs = sequences(rng, 120, [30, 12, 45])
    first = [120, 121, 125]
    got = on.next_token_logprobs(seqs, first, [10, 11], retain_cache=True)
    prefixes = [s[:first[r] + 4] + [33] for r, s in enumerate(seqs)]
    samples_on = on.sample(prefixes, seeds=[1, 2, 3], stop=["]"], max_new_tokens=6)
    want = off.next_token_logprobs(seqs, first, [10, 11], retain_cache=True)
    samples_off = off.sample(prefixes, seeds=[1, 2, 3], stop=["]"], max_new_tokens=6)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert samples_on == samples_off


# ---- sampling: shared contexts, refilled slots and flagged stop checks change no sample

STOP = ("→", "->", "]")


@pytest.fixture(scope="module")
def favouring(tokenizer):
    """A backend whose samples are mostly call-like tokens, so that they hit stops at varied steps."""
    from conftest import CALL_TOKENS, favouring_llama
    return HFBackend(favouring_llama(tokenizer, CALL_TOKENS + ["]", "\n"]), tokenizer, max_batch_tokens=256)


def plain_sample(lm, prefix, seed, max_new):
    """One sample, the whole sequence through the model at every step, no cache at all."""
    gen, draws = [], torch.Generator().manual_seed(seed)
    for _ in range(max_new):
        with torch.inference_mode():
            logits = lm.model(torch.tensor([prefix + gen])).logits[0, -1].float()
        cdf = torch.softmax(logits, -1).double().cumsum(-1)  # the sampler's draw rule (HFBackend._cdf)
        gen.append(int(torch.searchsorted(cdf, torch.rand(1, generator=draws).double()).clamp(max=len(cdf) - 1)))
        done = _check_stop(lm.decode(gen), STOP)
        if done is not None:
            return done
    return Sample(lm.decode(gen), None)


def sampling_case(lm, rng):
    """Prefixes continuing three scored windows (positions inside each, two samples per position
    and call opening, openings of 1 to 3 tokens) and two prefixes no scoring pass covers."""
    prompt = rng.integers(5, 2000, 70).tolist()
    windows = [prompt + rng.integers(5, 2000, n).tolist() for n in (12, 20, 9)]
    openings = [lm.encode(" ["), lm.encode(" [Calculator("), lm.encode("[")]
    prefixes = [w[:70 + i] + openings[(i + r) % 3] for w in windows for i in (2, 5, 8) for r in range(3)
                for _ in range(2)]
    prefixes += [rng.integers(5, 2000, 30).tolist(), rng.integers(5, 2000, 4).tolist()]
    return windows, prefixes, list(range(100, 100 + len(prefixes)))


def test_samples_equal_plain_decoding_one_at_a_time(favouring):
    lm = favouring
    windows, prefixes, seeds = sampling_case(lm, np.random.default_rng(4))
    lm.next_token_logprobs(windows, [70, 70, 70], [10], retain_cache=True)
    small = HFBackend(lm.model, lm.tokenizer, max_sample_rows=4)  # slots refilled, then the batch shrinks
    small._retained = lm._retained
    got = small.sample(prefixes, seeds, STOP, max_new_tokens=8)
    lm.release()
    want = [plain_sample(lm, p, s, 8) for p, s in zip(prefixes, seeds)]
    assert got == want
    assert {s.stop for s in got} >= {None, "]"} and len({s.text for s in got}) > 10  # varied endings
    assert any(s.text == "" for s in got)  # some end at their first token, drawn from the shared opening


def test_samples_do_not_depend_on_the_batch(favouring):
    lm = favouring
    windows, prefixes, seeds = sampling_case(lm, np.random.default_rng(5))
    runs = []
    for rows, order in ((1, None), (3, "reversed"), (64, None), (64, "mixed")):
        backend = HFBackend(lm.model, lm.tokenizer, max_batch_tokens=256, max_sample_rows=rows)
        backend.next_token_logprobs(windows, [70, 70, 70], [10], retain_cache=True)
        ps, ss = list(prefixes), list(seeds)
        if order == "reversed":
            ps, ss = ps[::-1], ss[::-1]
        if order == "mixed":  # other rows in the same batch
            other, _, _ = sampling_case(lm, np.random.default_rng(6))
            ps, ss = ps + [w[:75] for w in other], ss + [7, 8, 9]
        out = dict(zip(ss, backend.sample(ps, ss, STOP, max_new_tokens=8)))
        runs.append([out[s] for s in seeds])
    assert all(run == runs[0] for run in runs[1:])


def test_the_text_is_read_after_every_token_that_may_end_a_stop(tokenizer):
    """Checking the text only after flagged tokens finds the same first stop as checking it
    after every token, also when "→" arrives split into its three bytes."""
    lm = HFBackend(tiny_llama(len(tokenizer)), tokenizer)
    byte_ids = tokenizer.convert_tokens_to_ids(["â", "Ĩ", "Ĵ"])  # byte-level tokens of e2 86 92
    assert lm.decode(byte_ids) == "→" and lm.decode(byte_ids[:1]) == "\ufffd"
    pool = byte_ids + [lm.encode(t)[0] for t in (" 12", " +", ")", " →", "-", ">", "]", "\n", " x", "é")]
    flags = lm._stop_flags(STOP)
    assert not flags[lm.encode(" 12")[0]] and all(flags[i] for i in byte_ids)
    rng = np.random.default_rng(7)
    for _ in range(300):
        seq = [int(t) for t in rng.choice(pool, 8)]
        every = next((s for n in range(1, 9) if (s := _check_stop(lm.decode(seq[:n]), STOP))), None)
        flagged = next((s for n in range(1, 9) if flags[seq[n - 1]] and (s := _check_stop(lm.decode(seq[:n]), STOP))),
                       None)
        assert flagged == every


def test_a_bfloat16_backend_copies_the_model(tiny_backend):
    lm = tiny_backend
    half = HFBackend(lm.model, lm.tokenizer, dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16 and lm.model.dtype == torch.float32
    assert half.dtype_setting == {"dtype": "bfloat16"} and lm.dtype_setting == {}
    seqs = [list(range(40, 90))]
    np.testing.assert_allclose(half.token_logprobs(seqs, [[30, 40]])[0], lm.token_logprobs(seqs, [[30, 40]])[0],
                               atol=0.2)


def test_no_pass_warns_of_a_deprecated_argument(backends):
    """Every way the backend runs the model (a shared prefix, retained caches, sampling, a decode
    session) names the KV cache as this transformers does: nothing warns that it is deprecated."""
    import logging
    import warnings
    from transformers.utils import logging as hf_logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    on, _ = backends
    seqs = sequences(np.random.default_rng(6), 100, [10, 20])
    handler, logger = Collect(), hf_logging.get_logger("transformers")
    hf_logging.warning_once.cache_clear()  # a warning an earlier test triggered would be shown once only
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            on.token_logprobs(seqs, [[101, 102], [105]])
            on.next_token_logprobs(seqs, [100, 100], [10, 11], retain_cache=True)
            on.sample([s[:104] for s in seqs], seeds=[1, 2], stop=["]"], max_new_tokens=4)
            session = on.decode_session()
            session.step([seqs[0][:5], seqs[1][:3]])
            session.keep([1])
            session.step([[7]])
    finally:
        logger.removeHandler(handler)
    assert on._prefix_kv  # the shared-prefix pass ran
    said = handler.messages + [str(w.message) for w in caught]
    assert not [m for m in said if "deprecat" in m.lower()], said


# the fingerprint of SmolLM2-135M-Instruct's tokenizer as earlier versions recorded it (from the
# backend's loaded model): runs they sampled must still resume and filter
SMOLLM2_FINGERPRINT = "2249d04c390bf14e"


def test_stages_record_the_tokenizer_and_dtype_without_loading_the_model(tmp_path, tiny_backend):
    """A Ray driver records the stages' settings while its workers hold the model: the tokenizer is
    loaded alone (also for a finetuned sampler, BASE + ADAPTER), and the dtype comes from the options."""
    from toolformer.config import FilterSettings, SampleSettings
    from toolformer.corpus.syntax import TOOLFORMER
    from toolformer.pipeline.filter import FilterStage
    from toolformer.pipeline.sample import SampleStage
    from toolformer.run.manifest import Run
    from toolformer.tools import get_tool

    def no_model():
        raise AssertionError("the model was loaded")

    run, tool, base = Run("r", tmp_path), get_tool("calculator"), "smollm2-135m-instruct"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    stages = [SampleStage(run, tool, TOOLFORMER, SampleSettings(), base, no_model),
              SampleStage(run, tool, TOOLFORMER, SampleSettings(adapter=str(adapter)), f"{base} + {adapter}", no_model),
              FilterStage(run, tool, TOOLFORMER, FilterSettings(), base, no_model)]
    for options, dtype in (({"backend": "hf"}, None), ({"backend": "hf", "dtype": "bfloat16"}, "bfloat16"),
                           ({"backend": "hf", "dtype": "float32"}, None)):
        for stage in stages:
            stage.backend_options = options
            settings = stage.settings()
            assert settings["tokenizer"] == SMOLLM2_FINGERPRINT and settings.get("dtype") == dtype
    # the same records as a loaded backend's
    assert HFBackend(tiny_backend.model, tiny_backend.tokenizer, dtype="bfloat16").dtype_setting == {"dtype": "bfloat16"}


def test_a_gguf_is_converted_once_per_content_not_per_path(tmp_path, monkeypatch):
    """Two copies of the same GGUF (two clones' environments) share one cached conversion; a file
    with other bytes, or a newer transformers, gets its own."""
    from toolformer.lm import loading
    monkeypatch.setenv("TOOLFORMER_CACHE", str(tmp_path / "cache"))
    for name, data in (("a", b"GGUF same"), ("b", b"GGUF same"), ("c", b"GGUF other")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.gguf").write_bytes(data)
    folder = {n: loading._gguf_cache(loading.ModelRef("m", str(tmp_path / n), "m.gguf")) for n in "abc"}
    assert folder["a"] == folder["b"] != folder["c"]
    assert folder["a"].parent == tmp_path / "cache" / "models" and folder["a"].name.startswith("m-")
    assert loading._conversion_key(tmp_path / "a" / "m.gguf", "0.0") != loading._conversion_key(tmp_path / "a" / "m.gguf", "9.9")


def test_release_models_frees_the_shared_models(tiny_model_dir):
    """The demo runs every step in one process: between steps the shared models are let go."""
    import gc
    import weakref
    from toolformer.lm.loading import load_causal_lm, release_models
    model, _ = load_causal_lm(str(tiny_model_dir))
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is not None  # the cache holds it
    release_models()
    assert alive() is None
