"""QA: answers a question with a short phrase, by retrieve-then-read.

The paper's QA tool is Atlas (Izacard et al. 2022), a retrieval-augmented seq2seq model finetuned
on Natural Questions (Schick et al. 2023, §2). This is a retrieve-then-read substitute: the top
WikiSearch passages (the same BM25 index, `toolformer.tools.wikisearch.search`) are given with
the question to an instruction-tuned causal LM (default: the embedded SmolLM2-135M-Instruct)
through its chat template; it answers greedily in a few tokens, and the answer is cleaned to a
short phrase.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from toolformer.assets import DEFAULT_LM
from toolformer.errors import UserValueError
from toolformer.tools.base import Executor, Tool, ToolError, register
from toolformer.tools import wikisearch

MAX_QUESTION_CHARS = 300   # calls are untrusted: bound the prompt one question can cause
MAX_NEW_TOKENS = 16
# asking for the bare answer in a system message gave the shortest answers of the variants tried
READER_INSTRUCTION = ("Answer the question using the passage. Reply with the answer only: "
                      "a name, place, date or number, never a full sentence.")
_ANSWER_LEAD_IN = re.compile(r"^(the )?(short )?answer\b(?:[^:]{0,30}:| is)\s*", re.IGNORECASE)


def reader_messages(question: str, passages: list[tuple[str, str, float]]) -> list[dict]:
    """Chat messages for the reader: the instruction, then the passages and the question."""
    context = "\n\n".join(f"Passage: {title}: {text}" for title, text, _ in passages)
    return [{"role": "system", "content": READER_INSTRUCTION},
            {"role": "user", "content": f"{context}\n\nQuestion: {question}"}]


def clean_answer(text: str) -> str:
    """A short phrase: the first line, without an "Answer:" lead-in, quotes or a final period."""
    lines = text.strip().splitlines()
    answer = _ANSWER_LEAD_IN.sub("", lines[0].strip()) if lines else ""
    answer = answer.strip(" \"'`*")
    if answer.endswith(".") and not re.search(r"\b[A-Z]\.$", answer):  # keep "U.S.", "D.C."
        answer = answer[:-1].rstrip(" \"'`*")
    return answer


def make_executor(corpus: str | Path | None = None, model: str = DEFAULT_LM, passages: int = 1,
                  max_new_tokens: int = MAX_NEW_TOKENS, device: str | None = None) -> Executor:
    """executor(question, meta) -> short answer. The index and the model load here, not in the
    first call, so that call's timeout covers answering only."""
    import torch
    from toolformer.lm.loading import load_causal_lm

    if passages < 1 or not 1 <= max_new_tokens <= 64:
        raise UserValueError("passages must be >= 1 and max_new_tokens in 1..64")
    index = wikisearch.load_index(corpus)
    lm, tokenizer = load_causal_lm(model, device)

    def qa(question: str, meta: Mapping) -> str:
        question = " ".join(question.split())[:MAX_QUESTION_CHARS]
        if not question:
            raise ToolError("empty question")
        hits = index.search(question, passages)
        if not hits:
            raise ToolError("no results")
        ids = tokenizer.apply_chat_template(reader_messages(question, hits), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        ids = {name: t.to(lm.device) for name, t in ids.items()}
        with torch.inference_mode():
            out = lm.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                              pad_token_id=tokenizer.pad_token_id)
        answer = clean_answer(tokenizer.decode(out[0, ids["input_ids"].shape[1]:],
                                               skip_special_tokens=True))
        if not answer:
            raise ToolError("no answer")
        return answer

    return qa


TOOL = register(Tool(
    name="QA",
    description="Answers a factual question with a short phrase (who, what, where, when): "
                "looks the question up in Wikipedia and reads the answer from the best passage.",
    examples=(
        "[QA(Who founded Apple?) → Steve Jobs]",
        "[QA(What is the capital of Australia?) → Canberra]",
        "[QA(In which year did the Berlin Wall fall?) → 1989]",
    ),
    tau_s=0.05, k=5, m=5, tau_f=1.0,   # paper defaults (Appendix A)
    make_executor=make_executor,
    heuristic=None,
    timeout_s=30.0,  # runs an LM
    max_result_chars=200,
))
