"""The backend's shared-prefix cache: a prompt every row shares is encoded once, and nothing a
stage reads changes because of it."""
import numpy as np
import pytest

from toolformer.lm.hf import HFBackend


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
