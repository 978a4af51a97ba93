"""The filter's losses against a straightforward reference: one sequence at a time, full softmax."""
import numpy as np
import pytest
import torch

from toolformer.tools import get_tool
from toolformer.pipeline.filter import WEIGHTS, Scorer, loss_weights, scored_record, weighted_loss
from toolformer.lm.hf import HFBackend
from toolformer.corpus.syntax import TOOLFORMER

DOC = " The farm had 12 cows and bought 30 more, so it now has 42 cows in the barn."


def test_weights_are_exactly_the_papers():
    assert np.allclose(loss_weights(), np.array([1, .8, .6, .4, .2, 0]) / 3, atol=0, rtol=1e-15)
    assert weighted_loss(np.log([0.5, 0.5])) == pytest.approx(-(1 + .8) / 3 * np.log(0.5))


def reference_loss(model, start, z, x, i):
    seq = torch.tensor([start + z + x])
    with torch.no_grad():
        logp = torch.log_softmax(model(seq).logits[0].double(), -1)
    head = len(start) + len(z)
    total = 0.0
    for t in range(5):
        if i + t < len(x):
            total -= WEIGHTS[t] * logp[head + i + t - 1, x[i + t]].item()
    return total


def cases(lm):
    x = lm.encode(DOC)
    n = len(x)
    # calls at the start, the middle and the end (continuations of 5, 5 and 2 tokens)
    return x, [(0, "12 + 30", "42"), (n // 2, "12 + 30", "42"), (n // 2, "2 * 3", "6"),
               (n - 2, "12 + 30", "42"), (3, "12 + 30", "42")]


def test_losses_equal_reference_and_do_not_depend_on_batching(tiny_backend):
    lm = tiny_backend
    x, calls = cases(lm)
    tool = get_tool("calculator")
    scorer = Scorer(lm, tool, TOOLFORMER)
    items = [(("d", 0), x, i, inp, res) for i, inp, res in calls]
    got = scorer.score(items)
    for (i, inp, res), (plus, no_call, no_result) in zip(calls, got):
        z_plus = lm.encode(TOOLFORMER.render("Calculator", inp, res))
        z_empty = lm.encode(TOOLFORMER.render("Calculator", inp, ""))
        assert plus == pytest.approx(reference_loss(lm.model, lm.start_ids, z_plus, x, i), abs=1e-5)
        assert no_call == pytest.approx(reference_loss(lm.model, lm.start_ids, [], x, i), abs=1e-5)
        assert no_result == pytest.approx(reference_loss(lm.model, lm.start_ids, z_empty, x, i), abs=1e-5)
    assert len({round(v, 6) for row in got for v in row}) > 5  # the variants really differ
    one_by_one = HFBackend(lm.model, lm.tokenizer, max_batch_tokens=1)
    shuffled = items[::-1] + items  # other order, other batch, duplicates
    again = Scorer(one_by_one, tool, TOOLFORMER).score(shuffled)
    assert np.allclose(np.array(again), np.array(got[::-1] + got), atol=1e-5)


def test_l_eps_is_computed_once_per_window(tiny_backend, monkeypatch):
    lm = tiny_backend
    x, calls = cases(lm)
    seen = []
    real = lm.token_logprobs
    monkeypatch.setattr(lm, "token_logprobs", lambda seqs, targets: seen.append(seqs) or real(seqs, targets))
    Scorer(lm, get_tool("calculator"), TOOLFORMER).score([(("d", 0), x, i, a, b) for i, a, b in calls])
    (seqs,) = seen
    bare = [s for s in seqs if s[1:4] == x[:3]]
    # one pass without a prefix for all five candidates; calls 0, 1, 3, 4 share their prefixes
    assert len(bare) == 1 and len(seqs) == 1 + 2 * 2
    # sequences stop at the last weighted token
    assert max(len(s) for s in seqs) <= len(lm.start_ids) + 40 + len(x)


def test_scored_record_uses_the_min_of_both_no_call_losses():
    rec = {"error": None}
    r = scored_record(rec, (1.0, 3.0, 2.2), tau_f=1.0)
    assert (r["loss_minus"], r["usefulness"], r["kept"]) == (2.2, pytest.approx(1.2), True)
    r = scored_record(rec, (1.0, 1.8, 2.2), tau_f=1.0)
    assert (r["loss_minus"], r["kept"]) == (1.8, False) and "0.800 < tau_f 1" in r["reason"]
    r = scored_record({"error": "timeout after 1 s"}, None, tau_f=1.0)
    assert r["kept"] is False and r["usefulness"] is None and r["reason"] == "tool error: timeout after 1 s"


@pytest.mark.slow
def test_useful_call_kept_irrelevant_call_dropped(real_backend):
    lm = real_backend
    text = " Our store sold 4817 apples on Monday and 5243 apples on Tuesday, 10060 apples in total."
    x = lm.encode(text)
    i = next(j for j in range(len(x)) if lm.decode(x[:j]).endswith("Tuesday,"))
    scorer = Scorer(lm, get_tool("calculator"), TOOLFORMER)
    useful, irrelevant = scorer.score([(("d", 0), x, i, "4817 + 5243", "10060"), (("d", 0), x, i, "7 * 3", "21")])
    assert scored_record({"error": None}, useful, tau_f=0.5)["kept"]
    assert not scored_record({"error": None}, irrelevant, tau_f=0.5)["kept"]


def test_lazy_scoring_keeps_the_same_calls_and_computes_only_what_can_change_a_decision(tiny_backend):
    lm = tiny_backend
    x, calls = cases(lm)
    items = [(("d", 0), x, i, inp, res) for i, inp, res in calls]
    items += [(("d", 0), x, i, inp, res) for i in (5, 9, 14) for inp, res in (("1 + 1", "2"), ("7 * 6", "42"))]
    scorer = Scorer(lm, get_tool("calculator"), TOOLFORMER)
    full = scorer.score(items)
    no_call = sorted(f[1] for f in full)
    bound = sorted(f[1] - f[0] for f in full)
    seen = set()
    mid = lambda v, k: (v[k] + v[k + 1]) / 2  # noqa: E731  (no candidate sits on the threshold)
    # thresholds that split the candidates at each of the three steps
    for tau in (mid(no_call, len(no_call) // 2), mid(bound, len(bound) // 3), mid(bound, len(bound) - 2), -1e9):
        lazy = scorer.score(items, lazy_tau=tau)
        # the lazy passes batch other rows together: equal up to fp32 rounding (~1e-7 relative)
        for (plus, eps, no_result), want in zip(lazy, full):
            assert eps == pytest.approx(want[1], rel=1e-6)
            assert (plus is None) == (want[1] < tau)
            assert (no_result is None) == (plus is None or want[1] - want[0] < tau)
            if plus is not None:
                assert plus == pytest.approx(want[0], rel=1e-6)
            if no_result is not None:
                assert no_result == pytest.approx(want[2], rel=1e-6)
            seen.add((plus is None, no_result is None))
            a, b = scored_record({"error": None}, (plus, eps, no_result), tau), scored_record({"error": None}, want, tau)
            assert a["kept"] == b["kept"]
            assert a["usefulness"] is None or a["usefulness"] == pytest.approx(b["usefulness"], abs=1e-5)
    assert seen == {(True, True), (False, True), (False, False)}
