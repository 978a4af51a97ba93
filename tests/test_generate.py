"""Decoding with live tools on a tiny random Llama whose logits are steered by a script."""
from __future__ import annotations

import torch
import pytest

from conftest import tiny_llama
from toolformer.tools import Tool
from toolformer.inference import ToolBox, ToolDecoder, offer_tools
from toolformer.lm.hf import HFBackend, cache_arg
from toolformer.lm.tokens import marker_token_ids
from toolformer.corpus.syntax import HW3, TOOLFORMER


class Steered(torch.nn.Module):
    """A tiny model plus a logit bias: after the prompt it is pushed to write `script` token by token
    (the decoder's tool results included, since the script holds the whole continuation), then EOS.

    `strength` is the bias; `second` pushes the first script token to second place only (the model's own
    favourite gets a larger bias), to test the top-k trigger.
    """

    def __init__(self, model, tokenizer, script: str, strength: float = 1e4, second: bool = False):
        super().__init__()
        self.model, self.generation_config = model, model.generation_config
        self.script = tokenizer.encode(script, add_special_tokens=False) + [tokenizer.eos_token_id]
        self.strength, self.second = strength, second
        self.seen: list[list[int]] = []
        self.prompt_len: list[int] = []

    def forward(self, input_ids, attention_mask, **kwargs):
        cache = kwargs.get(cache_arg())
        if cache is not None and cache.layers[0].keys.shape[0] < len(self.seen):
            # the decoder dropped finished rows: find the survivors by their cached keys
            keys = cache.layers[0].keys
            kept = [next(i for i, old in enumerate(self.keys) if torch.equal(old, k)) for k in keys]
            self.seen, self.prompt_len = [self.seen[i] for i in kept], [self.prompt_len[i] for i in kept]
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        step_mask = attention_mask[:, -input_ids.shape[1]:]
        if cache is None:  # a new batch
            self.seen = [ids[m.bool()].tolist() for ids, m in zip(input_ids, step_mask)]
            self.prompt_len = [len(s) for s in self.seen]
        else:
            for r in range(len(self.seen)):
                self.seen[r] += input_ids[r][step_mask[r].bool()].tolist()
        self.keys = getattr(out, cache_arg()).layers[0].keys.clone()
        logits = out.logits[:, -1].clone()
        for r, seen in enumerate(self.seen):
            done = len(seen) - self.prompt_len[r]
            if done < len(self.script) and seen[self.prompt_len[r]:] == self.script[:done]:
                target = self.script[done]
                if self.second and done == 0:
                    own = logits[r].clone()
                    own[target] = float("-inf")
                    logits[r, own.argmax()] += 2 * self.strength
                logits[r, target] += self.strength
        out.logits = logits[:, None]
        return out


def counting_tool(name: str, answer: str):
    log = []

    def make_executor():
        def execute(input, meta):
            log.append((input, dict(meta)))
            return answer
        return execute

    tool = Tool(name=name, description="test", examples=(), tau_s=0, k=1, m=1, tau_f=0,
                make_executor=make_executor)
    return tool, log


@pytest.fixture(scope="module")
def base(tokenizer):
    return tiny_llama(len(tokenizer))


def test_call_runs_once_and_result_appears(base, tokenizer):
    # the script writes the call up to the arrow; the decoder must add " 0.29]" itself
    script = " [Calculator(400 / 1400) → 0.29] 29%"
    tool, log = counting_tool("Calculator", "0.29")
    model = Steered(base, tokenizer, script)
    dec = ToolDecoder(HFBackend(model, tokenizer), TOOLFORMER, ToolBox([tool]), top_k=10, max_calls=1)
    (gen,) = dec.generate(["400 of 1400 passed:"], [{"date": "2020-01-02"}], max_new_tokens=40)
    assert log == [("400 / 1400", {"date": "2020-01-02"})]
    assert gen.output == script
    assert gen.answer == "29%"
    assert gen.calls == [{"tool": "Calculator", "input": "400 / 1400", "result": "0.29", "error": None}]
    # tool result tokens are fed, not generated: the model wrote everything else, plus EOS
    n_result = len(tokenizer.encode(" 0.29]", add_special_tokens=False))
    assert gen.new_tokens == len(model.script) - n_result


def test_result_comes_from_the_tool_not_the_model(base, tokenizer):
    tool, log = counting_tool("Calculator", "7")
    model = Steered(base, tokenizer, " [Calculator(3 + 4) → 7] 7")
    dec = ToolDecoder(HFBackend(model, tokenizer), TOOLFORMER, ToolBox([tool]))
    (gen,) = dec.generate(["x"], max_new_tokens=30)
    assert len(log) == 1 and gen.output == " [Calculator(3 + 4) → 7] 7"

    wrong, _ = counting_tool("Calculator", "8")  # a different result breaks the script: the model drifts
    model = Steered(base, tokenizer, " [Calculator(3 + 4) → 7] 7")
    (gen,) = ToolDecoder(HFBackend(model, tokenizer), TOOLFORMER, ToolBox([wrong])).generate(["x"], max_new_tokens=12)
    assert gen.output.startswith(" [Calculator(3 + 4) → 8]") and gen.calls[0]["result"] == "8"


def test_tools_off_never_calls(base, tokenizer):
    tool, log = counting_tool("Calculator", "0.29")
    model = Steered(base, tokenizer, " [Calculator(400 / 1400) → 0.29] 29%")
    dec = ToolDecoder(HFBackend(model, tokenizer), TOOLFORMER, toolbox=None)
    (gen,) = dec.generate(["400 of 1400 passed:"], max_new_tokens=20)
    assert log == [] and gen.calls == []
    banned = set(marker_token_ids(dec.lm, TOOLFORMER.start))
    assert {tokenizer.encode(s, add_special_tokens=False)[0] for s in (" [", "[")} <= banned
    assert "[" not in gen.output


def test_call_budget_bans_a_second_call(base, tokenizer):
    tool, log = counting_tool("Calculator", "2")
    script = " [Calculator(1 + 1) → 2] [Calculator(2 + 2) → 4]"
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, ToolBox([tool]),
                         max_calls=1).generate(["x"], max_new_tokens=40)
    assert len(log) == 1 and gen.output.count("[") == 1
    log.clear()
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, ToolBox([tool]),
                         max_calls=2).generate(["x"], max_new_tokens=40)
    assert [i for i, _ in log] == ["1 + 1", "2 + 2"]


def test_a_bracket_is_not_a_call(base, tokenizer):
    # the forced start marker is followed by arithmetic, not a tool name: plain text, budget spent
    tool, log = counting_tool("Calculator", "19")
    script = " 5 + [5 + 14] = 19 [Calculator(1 + 1) → 2]"
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, ToolBox([tool])).generate(
        ["x"], max_new_tokens=30)
    assert (gen.calls, gen.false_starts, log) == ([], 1, [])
    assert gen.output.startswith(" 5 + [5 + 14] = 19") and "Calculator" not in gen.output
    assert gen.answer.startswith("5 + [5 + 14] = 19")


def test_unfinished_call_is_left_out_of_the_answer(base, tokenizer):
    tool, log = counting_tool("Calculator", "2")
    script = " 7 [Calculator(1 + 1"  # decoding stops (token cap) inside the call
    cap = len(tokenizer.encode(script, add_special_tokens=False))
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER,
                         ToolBox([tool])).generate(["x"], max_new_tokens=cap)
    assert gen.output == " 7 [Calculator(1 + 1" and gen.answer == "7" and log == []
    assert gen.calls == [{"tool": None, "input": None, "result": None, "error": "unfinished call"}]


def test_a_call_without_its_arrow_is_closed_and_run_at_max_call_tokens(base, tokenizer):
    """A model that writes a sentence into a call gets the call closed and run after
    max_call_tokens tokens (from the start marker), and keeps the rest of its budget to answer."""
    tool, log = counting_tool("Calculator", "2")
    script = " [Calculator(1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1"
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, ToolBox([tool]),
                         max_call_tokens=8).generate(["x"], max_new_tokens=20)
    # " [", "Calcul", "ator", "(", "1", " +", " ", "1": eight tokens, then ") → 2]" is fed
    assert log == [("1 + 1", {})] and gen.output.startswith(" [Calculator(1 + 1) → 2]")
    assert gen.calls == [{"tool": "Calculator", "input": "1 + 1", "result": "2", "error": None, "cut_at": 8}]
    assert gen.new_tokens == 20  # the model goes on after the call


def test_top_k_trigger(base, tokenizer):
    # the start marker is only the second most likely token: top-10 starts a call, greedy does not
    tool, log = counting_tool("Calculator", "3")
    script = " [Calculator(1 + 2) → 3]"
    for k, calls in ((10, 1), (1, 0)):
        log.clear()
        model = Steered(base, tokenizer, script, strength=50, second=True)
        dec = ToolDecoder(HFBackend(model, tokenizer), TOOLFORMER, ToolBox([tool]), top_k=k)
        (gen,) = dec.generate(["x"], max_new_tokens=3)
        assert len(gen.calls) == calls and gen.output.startswith(" [") == bool(calls)


def test_hw3_syntax_and_unknown_tool(base, tokenizer):
    tool, log = counting_tool("Calculator", "16")
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, " <<8*2>>16 apples"), tokenizer), HW3,
                         ToolBox([tool])).generate(["x"], max_new_tokens=20)
    # hw3's result is the text's own number: the answer keeps it
    assert log[0][0] == "8*2" and gen.output == " <<8*2>>16 apples" and gen.answer == "16 apples"

    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, " [QA(who?) → ] x"), tokenizer), TOOLFORMER,
                         ToolBox([tool])).generate(["x"], max_new_tokens=20)
    assert gen.calls[0]["error"] == "tool 'QA' is not available here" and gen.output.startswith(" [QA(who?) → ]")


@pytest.mark.parametrize("syntax, script, answer", [
    (TOOLFORMER, " \\[Calculator(1 + 2) → 3] x", "[Calculator(1 + 2) → 3] x"),
    (HW3, " a \\<<8*2\\>>16 b", "a <<8*2>>16 b")])
def test_a_start_marker_after_a_backslash_is_text(base, tokenizer, syntax, script, answer):
    # " \\" and "[" are two tokens: the "[" is a start token, but after the backslash no call opens
    tool, log = counting_tool("Calculator", "3")
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), syntax,
                         ToolBox([tool])).generate(["x"], max_new_tokens=20)
    assert log == [] and gen.calls == [] and gen.false_starts == 0
    assert gen.output == script and gen.answer == answer


def test_batched_equals_one_by_one(base, tokenizer):
    # one row pauses for a tool mid-batch (its step feeds several tokens), the others must not notice
    prompts = ["The total is", "A much longer prompt about the union and the treasury,", "x"]
    tool, _ = counting_tool("Calculator", "0.29")

    def run(batch_size):
        model = Steered(base, tokenizer, " [Calculator(400 / 1400) → 0.29] 29%", strength=30)
        dec = ToolDecoder(HFBackend(model, tokenizer), TOOLFORMER, ToolBox([tool]), top_k=10)
        return dec.generate(prompts, max_new_tokens=24, batch_size=batch_size)

    one, batched = run(1), run(3)
    assert [g.output for g in one] == [g.output for g in batched]
    assert [g.calls for g in one] == [g.calls for g in batched]
    # a row that follows the script calls, ends early with EOS and leaves the batch; one runs to the cap
    lengths = sorted(g.new_tokens for g in one)
    assert any(g.calls for g in one) and lengths[0] < lengths[-1] == 24


def test_a_tool_not_offered_for_the_input_is_never_called(base, tokenizer):
    """Offered no tool the toolbox holds, an input decodes as with tools off; offered one by a
    retriever, its calls name that tool, whatever name the model was about to write."""
    tool, log = counting_tool("Calculator", "2")
    script = " [Calculator(1 + 1) → 2]"
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, ToolBox([tool])).generate(
        ["x"], max_new_tokens=20, offered=[frozenset({"Calendar"})])
    assert log == [] and gen.calls == [] and "[" not in gen.output
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, ToolBox([tool])).generate(
        ["x"], max_new_tokens=20, offered=[frozenset({"Calculator"})])
    assert log == [("1 + 1", {})] and gen.calls[0]["result"] == "2"
    calendar, dates = counting_tool("Calendar", "Today is Monday, May 1, 2017.")
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER,
                         ToolBox([tool, calendar])).generate(["x"], max_new_tokens=20, offered=[frozenset({"Calendar"})])
    assert gen.output.startswith(" [Calendar") and len(log) == 1
    (gen,) = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER,
                         ToolBox([tool, calendar])).generate(["x"], max_new_tokens=20)
    assert gen.calls[0]["tool"] == "Calculator" and len(log) == 2  # two tools callable: the model names one


def test_offer_tools_takes_the_retrievers_top_k_of_the_toolbox():
    from toolformer.retrieval import rank_tools
    box = ToolBox(["calculator", "calendar", "wikisearch"])
    texts = ["What day of the week is today?", "How much is 17 times 23?"]
    offered = offer_tools("bm25", texts, box, 2)
    assert offered == [frozenset(r) for r in rank_tools("bm25", texts, list(box.tools.values()), 2)]
    assert all(len(o) == 2 and o <= {"Calculator", "Calendar", "WikiSearch"} for o in offered)
    assert offer_tools(None, texts, box, 2) is None and offer_tools("bm25", texts, None, 2) is None


def test_a_decoder_done_with_keeps_no_model_alive(tokenizer):
    """One process that evaluates adapter after adapter (the demo) frees each model once its decoder
    is gone: nothing memoised on the way (the banned marker tokens of tools off) holds the backend."""
    import gc
    import weakref
    model = tiny_llama(len(tokenizer))
    dec = ToolDecoder(HFBackend(model, tokenizer), TOOLFORMER, toolbox=None)
    dec.generate(["x"], max_new_tokens=2)
    alive = weakref.ref(model)
    del dec, model
    gc.collect()
    assert alive() is None


def test_generate_refuses_a_date_the_calendar_cannot_read(tiny_model_dir, capsys):
    from toolformer.cli import main
    assert main(["generate", "x", "--model", str(tiny_model_dir), "--date", "notadate"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --date must be an ISO 8601 date such as 2013-04-19, got 'notadate'"]
