"""QA: answers a question with a short phrase, by retrieve-then-read.

The paper's QA tool is Atlas (Izacard et al. 2022), a retrieval-augmented seq2seq model finetuned
on Natural Questions (Schick et al. 2023, §2). This is a retrieve-then-read substitute: the top
WikiSearch passages (the same BM25 index, `toolformer.tools.wikisearch.search`) are given with
the question to an instruction-tuned causal LM (default: the embedded SmolLM2-135M-Instruct)
through its chat template; it answers greedily in a few tokens, and the answer is cleaned to a
short phrase. The execute stage hands the tool a chunk's distinct questions at once
(`executor.batch`): they are decoded batch_size at a time, sorted by prompt length and padded on
the left, each to the answer it gets alone (bench/qa_batch.py measures calls/s both ways).
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
BATCH_SIZE = 16           # questions decoded together by executor.batch
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
                  max_new_tokens: int = MAX_NEW_TOKENS, device: str | None = None,
                  batch_size: int = BATCH_SIZE, skip_bad: bool = False) -> Executor:
    """executor(question, meta) -> short answer; executor.batch(questions, metas) answers many at
    once (run_calls uses it), each the same answer as alone. The index (corpus, skip_bad: as
    WikiSearch's) and the model load here, not in the first call, so that call's timeout covers
    answering only."""
    import torch
    from toolformer.lm.loading import load_causal_lm

    if passages < 1 or not 1 <= max_new_tokens <= 64 or batch_size < 1:
        raise UserValueError("passages and batch_size must be >= 1 and max_new_tokens in 1..64")
    index = wikisearch.load_index(corpus, skip_bad, progress=True)
    lm, tokenizer = load_causal_lm(model, device)
    eos = lm.generation_config.eos_token_id
    stop = set(eos if isinstance(eos, list) else [eos]) - {None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(stop))

    def prompt(question: str, meta: Mapping) -> list[int]:
        """The reader's prompt tokens for one question; a ToolError when there is nothing to read."""
        question = " ".join(question.split())[:MAX_QUESTION_CHARS]
        if not question:
            raise ToolError("empty question")
        # a document's own article is never read for it (wikisearch.EXCLUDE_KEY: no copied answers)
        hits = index.search(question, passages, meta.get(wikisearch.EXCLUDE_KEY))
        if not hits:
            raise ToolError("no results")
        return list(tokenizer.apply_chat_template(reader_messages(question, hits), add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"])

    def generate(prompts: list[list[int]]) -> list[str]:
        """Greedy answers to prompts of the same length or nearly: padded on the left, so every
        row's last prompt token is the last column and its positions count from its first real token."""
        width = max(map(len, prompts))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=lm.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=lm.device)
        with torch.inference_mode():
            out = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                              do_sample=False, pad_token_id=pad)
        answers = []
        for row in out[:, width:].tolist():
            end = next((i for i, t in enumerate(row) if t in stop), len(row))  # what follows is padding
            answers.append(tokenizer.decode(row[:end], skip_special_tokens=True))
        return answers

    def batch(questions: list[str], metas: list[Mapping]) -> list[str | ToolError]:
        """Answers (or the ToolError of a question) in the given order. Prompts are sorted by
        length and decoded batch_size at a time, so a batch pads little."""
        out: list[str | ToolError] = [ToolError("no answer")] * len(questions)
        prompts = {}
        for i, question in enumerate(questions):
            try:
                prompts[i] = prompt(question, metas[i])
            except ToolError as err:
                out[i] = err
        order = sorted(prompts, key=lambda i: len(prompts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            for i, text in zip(rows, generate([prompts[i] for i in rows])):
                answer = clean_answer(text)
                out[i] = answer if answer else ToolError("no answer")
        return out

    def qa(question: str, meta: Mapping) -> str:
        [answer] = batch([question], [meta])
        if isinstance(answer, ToolError):
            raise answer
        return answer

    qa.batch = batch
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
    uses=("Question: Who wrote Hamlet?", "Marie Curie was born in", "The capital of Kenya is",
          "Charles Dickens died in", "The club's head coach in the 1990 season was",
          "Question: When did the Second World War end?"),
    tau_s=0.05, k=5, m=5, tau_f=1.0,   # paper defaults (Appendix A)
    make_executor=make_executor,
    heuristic=None,
    timeout_s=30.0,  # runs an LM
    max_result_chars=200,
    meta_keys=(wikisearch.EXCLUDE_KEY,),  # the document's own article is left out: results depend on it
))
