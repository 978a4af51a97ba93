"""QA: answer cleaning, the reader prompt, and two real answers from the embedded SmolLM2 reader.

The slow tests load the real default model (first use converts the GGUF, ~30 s, cached after)
and generate twice: once from an invented passage (the answer can only come from reading it) and
once from the real Wikipedia index.
"""
from __future__ import annotations

import json
import time

import pytest

from conftest import tiny_llama
from toolformer.corpus.syntax import TOOLFORMER
from toolformer.pipeline.execute import ExecuteStage
from toolformer.run.manifest import Run
from toolformer.run.records import Document
from toolformer.tools import Tool, ToolError, run_calls
from toolformer.tools import qa

QUINTOR = {"id": "q1", "title": "Quintor",
           "text": "Quintor is a fictional planet in the Vela system. Its capital city is Zorblax, "
                   "founded by the explorer Mira Tondel."}


@pytest.mark.parametrize("raw, clean", [
    ("Albert Einstein", "Albert Einstein"),
    ("The answer to this question is: Albert Einstein", "Albert Einstein"),
    ('Answer: "Paris".', "Paris"),
    ("The answer is 1989.", "1989"),
    ("  Jupiter\nThe largest planet.", "Jupiter"),
    ("Washington, D.C.", "Washington, D.C."),
    ("Answering machines record calls", "Answering machines record calls"),
    ("   ", ""),
])
def test_clean_answer(raw, clean):
    assert qa.clean_answer(raw) == clean


def test_reader_messages_hold_instruction_passages_and_question():
    hits = [("Quintor", "Its capital is Zorblax.", 3.0), ("Vela", "Vela is a system.", 1.0)]
    system, user = qa.reader_messages("What is the capital of Quintor?", hits)
    assert system == {"role": "system", "content": qa.READER_INSTRUCTION}
    assert user["role"] == "user" and user["content"] == (
        "Passage: Quintor: Its capital is Zorblax.\n\nPassage: Vela: Vela is a system.\n\n"
        "Question: What is the capital of Quintor?")


def test_tool_declares_the_paper_defaults_and_the_substitute():
    t = qa.TOOL
    assert (t.name, t.tau_s, t.k, t.m, t.tau_f, t.heuristic) == ("QA", 0.05, 5, 5, 1.0, None)
    assert t.timeout_s >= 30
    assert "Atlas" in qa.__doc__ and "retrieve-then-read" in qa.__doc__


@pytest.fixture(scope="module")
def quintor_qa(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("qa") / "passages.jsonl"
    corpus.write_text(json.dumps(QUINTOR) + "\n")
    return qa.make_executor(corpus=corpus)


@pytest.mark.slow
def test_reader_answers_from_the_retrieved_passage(quintor_qa):
    # an invented fact: the model cannot know it without reading the passage
    # called directly: on a busy shared CPU one answer can take longer than the tool's timeout
    assert "Zorblax" in quintor_qa("What is the capital city of Quintor?", {})


@pytest.mark.slow
def test_empty_and_unmatched_questions_are_tool_errors(quintor_qa):
    with pytest.raises(ToolError, match="empty question"):
        quintor_qa(" \n ", {})
    with pytest.raises(ToolError, match="no results"):
        quintor_qa("Who is the owner of the football club?", {})  # no word of it in the corpus


@pytest.mark.slow
def test_real_question_on_the_default_index():
    answer = qa.make_executor()("Who developed the theory of relativity?", {})
    assert "Einstein" in answer


# ---------------------------------------------------------------------------- batched execution

QUESTIONS = ["What is the capital city of Quintor?", "Who founded Zorblax?",
             "Which explorer founded the capital of the fictional planet Quintor in the Vela system?",
             "Quintor?", "   ", "Where is Quintor, and which system is the planet Quintor part of?",
             "Who is the owner of the football club?", "Is Zorblax the capital of Quintor?"]


def outcomes(executor, questions):
    """Each question answered alone: the answer, or its ToolError's message."""
    out = []
    for q in questions:
        try:
            out.append(executor(q, {}))
        except ToolError as err:
            out.append(f"error: {err}")
    return out


def as_outcomes(results):
    return [f"error: {r}" if isinstance(r, ToolError) else r for r in results]


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory, tokenizer):
    """A two-layer tiny Llama whose answers depend on the question (the shared one-layer model's
    barely do), with the real tokenizer and chat template."""
    import torch
    folder = tmp_path_factory.mktemp("reader")
    model = tiny_llama(len(tokenizer), layers=2)
    with torch.no_grad():
        model.lm_head.weight.div_(8)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_batched_answers_equal_one_at_a_time_on_a_tiny_model(tmp_path, reader_dir):
    corpus = tmp_path / "passages.jsonl"
    corpus.write_text(json.dumps(QUINTOR) + "\n")
    # batch_size 3 over 6 answerable questions of different lengths: two padded batches
    executor = qa.make_executor(corpus=corpus, model=str(reader_dir), batch_size=3, max_new_tokens=8)
    alone = outcomes(executor, QUESTIONS)
    assert alone[4] == "error: empty question" and alone[6] == "error: no results"
    answers = [a for a in alone if not a.startswith("error:")]
    assert len(answers) == 6 and len(set(answers)) > 1  # the tiny model says something, not always the same
    assert as_outcomes(executor.batch(QUESTIONS, [{}] * len(QUESTIONS))) == alone
    assert as_outcomes(executor.batch(QUESTIONS[::-1], [{}] * len(QUESTIONS))) == alone[::-1]


@pytest.mark.slow
def test_batched_answers_equal_one_at_a_time_on_the_real_model():
    questions = ["Who developed the theory of relativity?", "What is the capital of Australia?",
                 "In which year did the Berlin Wall fall?", "Who painted the Mona Lisa?",
                 "What is the largest planet in the Solar System?"]
    executor = qa.make_executor(batch_size=4)
    alone = outcomes(executor, questions)
    assert "Einstein" in alone[0]
    assert as_outcomes(executor.batch(questions, [{}] * len(questions))) == alone


def batching_tool(log: list, delay: float = 0.0) -> Tool:
    """A tool whose executor answers in batches (upper-cases its inputs) and logs each batch."""
    def make_executor():
        def one(text, meta):
            raise AssertionError("a batched tool is never called one at a time here")

        def batch(texts, metas):
            log.append(list(texts))
            time.sleep(delay)
            return [ToolError("nothing") if t == "bad" else t.upper() * (100 if t == "long" else 1) for t in texts]
        one.batch = batch
        return one
    return Tool(name="Shout", description="", examples=(), tau_s=0.0, k=1, m=1, tau_f=0.0,
                make_executor=make_executor, timeout_s=0.2, max_result_chars=10)


def test_run_calls_hands_the_batch_over_and_bounds_each_result():
    log = []
    tool = batching_tool(log)
    out = run_calls(tool, tool.make_executor(), ["a", "bad", "long"], [{}] * 3)
    assert log == [["a", "bad", "long"]]
    assert [(o.result, o.error) for o in out] == [("A", None), (None, "nothing"), ("LONGLONGLO", None)]
    slow = batching_tool([], delay=1.0)  # 3 calls may take 3 × 0.2 s together
    out = run_calls(slow, slow.make_executor(), ["a", "b", "c"], [{}] * 3)
    assert {o.error for o in out} == {"timeout after 0.6 s (a batch of 3 calls)"}


def test_execute_stage_sends_each_chunks_new_distinct_calls_as_one_batch(tmp_path):
    log = []
    tool = batching_tool(log)
    docs = [Document("d1", "x", {}), Document("d2", "y", {})]

    def cand(n, doc, input):
        return {"id": f"c{n}", "doc_id": doc, "tool": "shout", "window": 0, "position": n, "token_index": n,
                "p_start": 0.5, "input": input, "call": f"[Shout({input})"}
    stage = ExecuteStage(Run("r", tmp_path), tool, TOOLFORMER)
    old = tmp_path / "executed.jsonl"  # a resumed run: "b" ran before
    old.write_text(json.dumps({**cand(9, "d1", "b"), "result": "B (cached)", "error": None, "latency_ms": 1.0}) + "\n")
    stage.start(old, docs)
    records, counts = stage.process(docs, {"d1": [cand(0, "d1", "a"), cand(1, "d1", "b"), cand(2, "d1", "bad")],
                                           "d2": [cand(3, "d2", "a"), cand(4, "d2", "c")]})
    assert log == [["a", "bad", "c"]]  # once each, in order, the cached one left out
    assert [(r["id"], r["result"], r["error"]) for r in records] == [
        ("c0", "A", None), ("c1", "B (cached)", None), ("c2", None, "nothing"), ("c3", "A", None), ("c4", "C", None)]
    assert counts == {"executed_ok": 4, "executed_failed": 1, "distinct_calls": 3}
