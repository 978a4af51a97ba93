from dataclasses import replace

import numpy as np
import pytest
import torch

from toolformer.tools import get_tool
from toolformer.run.records import Document
from toolformer.config import SampleSettings
from toolformer.lm.tokens import start_marker_ids
from toolformer.pipeline.sample import Sampler, call_opening, top_positions
from toolformer.pipeline.windows import document_windows
from toolformer.corpus.syntax import HW3, TOOLFORMER

TEXT = "In 1790 the debt was 75,463,476 dollars; by 1791 it had grown by 2,000,000.\nSo the total was 77,463,476."


def test_windows_cover_the_text_and_map_tokens_to_characters(tiny_backend):
    lm = tiny_backend
    doc = Document("d", TEXT, {})
    windows = document_windows(lm, doc, size=7)
    ids = [t for w in windows for t in w.ids]
    assert ids == lm.encode(" " + TEXT)  # nothing dropped or repeated, never truncated
    assert all(len(w.ids) == 7 for w in windows[:-1])
    for w in windows:
        for tid, start in zip(w.ids, w.char_starts):
            piece = lm.decode([tid])
            # each token's text starts at its character offset (a leading space sits before it)
            assert TEXT[start:].startswith(piece) or TEXT[start:].startswith(piece.lstrip()) or start == 0
    assert windows[1].text == TEXT[windows[1].char_starts[0]:].split(" it")[0].strip() or windows[1].text


def test_top_positions():
    p = [0.1, 0.5, 0.0, 0.5, 0.3, 0.04]
    assert top_positions(p, 0.05, 2) == [1, 3]
    assert top_positions(p, 0.05, 10) == [0, 1, 3, 4]
    assert top_positions(p, 0.0, 3) == [1, 3, 4]
    assert top_positions([0.01, 0.02], 0.05, 5) == []
    assert top_positions(p, 0.05, 10, min_context=2) == [3, 4]  # positions 0 and 1 lack context


def test_position_probabilities_equal_one_prefix_at_a_time(tiny_backend):
    lm = tiny_backend
    tool = get_tool("calculator")
    sampler = Sampler(lm, tool, TOOLFORMER, SampleSettings(window=16))
    windows = document_windows(lm, Document("d", TEXT, {}), 16)
    seqs = [sampler.prompt_ids(w) + w.ids for w in windows]
    firsts = [len(sampler.prompt_ids(w)) for w in windows]
    batched = lm.next_token_logprobs(seqs, firsts, sampler.markers)
    markers = start_marker_ids(lm, TOOLFORMER.start)
    assert sorted(lm.decode([m]) for m in markers) == [" [", "["]
    for w, seq, first, lp in zip(windows, seqs, firsts, batched):
        for i in range(len(w.ids)):
            with torch.no_grad():
                probs = torch.softmax(lm.model(torch.tensor([seq[:first + i]])).logits[0, -1].double(), -1)
            want = max(probs[m].item() for m in markers)
            assert np.exp(lp[i].max()) == pytest.approx(want, rel=1e-4, abs=1e-9)


def test_call_opening_forces_the_tool_name(tiny_backend):
    lm = tiny_backend
    for marker in start_marker_ids(lm, TOOLFORMER.start):
        ids = call_opening(lm, TOOLFORMER, get_tool("wikisearch"), marker)
        assert ids[0] == marker and lm.decode(ids).strip() == "[WikiSearch("
    assert call_opening(lm, HW3, get_tool("calculator"), 7) == [7]


def test_sampler_records(tiny_backend):
    lm = tiny_backend
    settings = SampleSettings(window=16, tau_s=0.0, k=3, m=4, max_new_tokens=6)
    sampler = Sampler(lm, get_tool("calculator"), TOOLFORMER, settings, seed=1)
    counts = dict.fromkeys(("positions", "samples", "unclosed", "unparseable", "duplicates"), 0)
    windows = document_windows(lm, Document("d", TEXT, {}), 16)
    records = sampler.run_windows(windows, counts)
    assert counts["positions"] == 3 * len(windows)
    assert counts["samples"] == 3 * 4 * len(windows)
    # a random tiny model rarely closes a call: every sample is accounted for
    assert counts["samples"] == counts["unclosed"] + counts["unparseable"] + counts["duplicates"] + len(records)
    again = Sampler(lm, get_tool("calculator"), TOOLFORMER, settings, seed=1).run_windows(windows[::-1], dict(counts))
    assert sorted(map(str, records)) == sorted(map(str, again))  # seeds, not batches, decide samples
    late = dict.fromkeys(counts, 0)
    Sampler(lm, get_tool("calendar"), TOOLFORMER, replace(settings, min_context=10), seed=1).run_windows(windows, late)
    assert late["positions"] == 3 * (len(windows) - 1) + min(3, max(0, len(windows[-1].ids) - 10))


def test_a_tool_without_input_gets_one_call_per_position(tiny_backend):
    lm = tiny_backend
    settings = SampleSettings(window=16, tau_s=0.0, k=2, m=5)
    counts = dict.fromkeys(("positions", "samples", "unclosed", "unparseable", "duplicates"), 0)
    windows = document_windows(lm, Document("d", TEXT, {"date": "2013-04-19"}), 16)
    records = Sampler(lm, get_tool("calendar"), TOOLFORMER, settings, seed=1).run_windows(windows, counts)
    assert counts["positions"] == counts["samples"] == len(records) == 2 * len(windows)
    assert {r["call"] for r in records} == {"[Calendar()]"} and {r["input"] for r in records} == {""}


def test_a_finetuned_sampler_reads_p_start_on_the_text_alone(tmp_path, tokenizer):
    """--adapter DIR --no-prompt: the finetuned model samples, with no few-shot prompt before x."""
    import json
    from peft import LoraConfig, get_peft_model
    from conftest import favouring_llama
    from toolformer.config import RunSettings
    from toolformer.lm.hf import HFBackend
    from toolformer.lm.loading import FINETUNE_INFO
    from toolformer.pipeline.curate import curate
    from toolformer.run.manifest import Run
    from toolformer.run.records import read_jsonl

    base_dir, adapter = tmp_path / "base", tmp_path / "adapter"
    FAVOURED = [" [", "[", "1", " +"]  # the start markers are likely: p_start is large enough to compare
    favouring_llama(tokenizer, FAVOURED).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    peft = get_peft_model(favouring_llama(tokenizer, FAVOURED), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA starts as the identity: make it change the model
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft.save_pretrained(adapter)
    (adapter / FINETUNE_INFO).write_text(json.dumps({"base_model": str(base_dir)}))
    corpus = tmp_path / "docs.jsonl"
    text = "She had 12 apples and got 30 more, so she had 12 + 30 = 42 apples. Then she ate 2 of the 42."
    corpus.write_text(json.dumps({"id": "d", "text": text, "meta": {"date": "2013-04-19"}}) + "\n")

    settings = SampleSettings(window=64, tau_s=0.0, k=3, adapter=str(adapter), no_prompt=True)
    figures = curate(RunSettings(run="r", runs_dir=str(tmp_path / "runs"), corpus=str(corpus), model=str(base_dir),
                                 no_progress=True), "calendar", settings, stages=("sample",))
    run = Run("r", tmp_path / "runs")
    recorded = run.stage("sample", "calendar").settings
    assert (recorded["adapter"], recorded["no_prompt"], recorded["prompt"]) == (str(adapter), True, None)
    assert recorded["model"] == f"{base_dir} + {adapter}" and len(recorded["adapter_weights"]) == 16
    records = [r for _, r in read_jsonl(run.tool_dir("calendar") / "candidates.jsonl")]
    # Calendar takes no input: one call at each of the k best positions, no sampling needed
    assert figures["stages"]["sample/calendar"]["candidates"] == len(records) == 3

    tuned, base = HFBackend.from_ref(str(base_dir), adapter=str(adapter)), HFBackend.from_ref(str(base_dir))
    markers = start_marker_ids(tuned, TOOLFORMER.start)
    windows = {w.index: w for w in document_windows(tuned, Document("d", text, {}), 64)}

    def p_start(lm, rec) -> float:
        """max over the markers of p(marker | start + x_{1:i-1}): no prompt before x."""
        w = windows[rec["window"]]
        seq = lm.start_ids + w.ids[:rec["token_index"] - 64 * rec["window"]]
        with torch.no_grad():
            probs = torch.softmax(lm.model(torch.tensor([seq])).logits[0, -1].double(), -1)
        return max(probs[m].item() for m in markers)

    for rec in records:
        assert rec["p_start"] > 0 and rec["p_start"] == pytest.approx(p_start(tuned, rec), rel=1e-3, abs=0)
    # the adapter is used: the base model gives other probabilities
    assert any(rec["p_start"] != pytest.approx(p_start(base, rec), rel=0.05, abs=0) for rec in records)
