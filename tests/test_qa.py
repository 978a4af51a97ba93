"""QA: answer cleaning, the reader prompt, and two real answers from the embedded SmolLM2 reader.

The slow tests load the real default model (first use converts the GGUF, ~30 s, cached after)
and generate twice: once from an invented passage (the answer can only come from reading it) and
once from the real Wikipedia index.
"""
from __future__ import annotations

import json

import pytest

from toolformer.tools import ToolError
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
