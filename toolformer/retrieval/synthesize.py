"""Synthetic training queries from API documents alone (the E5 recipe at our scale).

The embedded instruct LM first brainstorms kinds of users (task kinds, once per tool set), then
for each document writes the request one of them would type (E5: brainstorm tasks, then write
examples for each).
Template queries filled from the record's fields (domain, functionality, a span of the
description) are the cheap alternative, or mixed in (--writer). Every query records where its
document ranks under BM25 (the InPars/Promptagator round-trip filter keeps it only in the top k)
and the best-ranked wrong documents (its hard negatives).

N queries in all are spread over the documents: document i gets N // D, the first N % D one more.
Each (document, slot) has its own seed, so a run killed half-way resumes to the same file:
DIR/synthetic.jsonl, one readable record per query, written a chunk of documents at a time.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path

from toolformer.errors import UserValueError
from toolformer.retrieval.bm25 import BM25
from toolformer.retrieval.data import Pair, ToolSet
from toolformer.retrieval.index import top_k

SYNTHETIC_FILE = "synthetic.jsonl"
META_FILE = "synthetic.json"   # the settings the file was written with (a resume must match)
WRITERS = ("lm", "templates", "mixed")
HARD_NEGATIVES = 3             # best-ranked wrong documents recorded per query
CHUNK_DOCS = 16                # documents generated and written per step

SYSTEM_PROMPT = "You write short, realistic requests that users type."
BRAINSTORM_PROMPT = ("Name one kind of user or project that needs a ready-made software API or pretrained "
                     "model. Answer with a short noun phrase only.")
REQUEST_PROMPT = ("API documentation:\n{doc}\n\n"
                  "A {task} needs exactly this API. Write the request they would type to find it: one "
                  "sentence that says what they want to do, without naming the API or the model.")
BRAINSTORM_SAMPLES = 24        # task kinds brainstormed once per tool set, from one prompt

# filled from the record's fields; a template whose fields are missing is not used
TEMPLATES = (
    "I need a model for {functionality}.",
    "Which API can I use for {domain}?",
    "Recommend a pretrained model for {functionality} ({domain}).",
    "What is an API that can do {functionality_lower}?",
    "I am looking for a {domain_lower} model trained on {dataset}.",
    "Find an API that does this: {span}",
    "I want to build an app for {domain_lower}: {span}",
    "Give me a model of the {api_name} family for {functionality_lower}.",
    # a user's situation around the need, as real requests have it: the encoder learns to look past it
    "{persona} needs a pretrained model for {functionality_lower}. Which API would you recommend?",
    "{persona} is building something that needs this: {span} Which API fits?",
    "{persona} works on {domain_lower} and wants a model that does this: {span}",
)
PERSONAS = ("A startup", "Our research lab", "A mobile app developer", "A student", "A hospital's IT team",
            "An online shop", "A news website", "A hobbyist", "A city council", "A game studio",
            "A farmer's cooperative", "A museum")


def spread(n: int, documents: int) -> list[int]:
    """How many of n queries each document gets: n // D, the first n % D one more."""
    return [n // documents + (i < n % documents) for i in range(documents)]


def slot_seed(seed: int, name: str, slot: int) -> int:
    return int(hashlib.sha256(f"{seed}\0{name}\0{slot}".encode()).hexdigest()[:8], 16)


def writer_of(writer: str, slot: int) -> str:
    """Who writes slot j: the one writer, or (mixed) the LM on even slots and templates on odd."""
    return writer if writer != "mixed" else ("lm" if slot % 2 == 0 else "templates")


def prompt_doc(fields: dict, text: str) -> str:
    """The document as the LM reads it: name, functionality, domain, the start of the description."""
    head = fields.get("api_name", "")
    meta = ", ".join(fields[f] for f in ("functionality", "domain") if f in fields)
    body = fields.get("description", text)
    return f"{head}{f' ({meta})' if meta else ''}: {body[:250]}"


def template_query(fields: dict, text: str, seed: int) -> tuple[str, str]:
    """(query, the template used): a template whose fields the record has, chosen by the seed."""
    rng = random.Random(seed)
    words = fields.get("description", text).split()
    length = min(len(words), rng.randint(6, 14))
    start = rng.randint(0, len(words) - length) if words else 0
    values = {**fields, "span": " ".join(words[start:start + length]).rstrip(".,;:") + ".",
              "persona": rng.choice(PERSONAS)}
    for f in ("functionality", "domain"):
        if f in fields:
            values[f"{f}_lower"] = fields[f].lower()
    usable = [t for t in TEMPLATES if all(k in values for k in re.findall(r"{(\w+)}", t))]
    template = rng.choice(usable)
    return template.format(**values), template


_PREFIX = re.compile(r"^(the user (requests|wants|asks|needs)[:,]?|request:|user:)\s*", re.I)


def clean_generation(text: str) -> str:
    """A sample as a query: special tokens, a leading 'The user requests:' and quotes removed."""
    text = re.sub(r"<\|[^|>]*\|>", "", text).strip()
    text = _PREFIX.sub("", text).strip().strip('"\'“”').strip()
    return text


class LMWriter:
    """The instruct LM behind the backend's batched, seeded sampling, prompted through its chat
    template. As in E5, the task kinds are brainstormed once (one prompt, many seeds: its prefix
    is encoded once), then each request is written for one document and one task kind."""

    def __init__(self, model_ref: str, seed: int, max_new_tokens: int = 40, temperature: float = 0.8):
        import toolformer.lm  # noqa: F401 - registers the backends
        from toolformer.lm.backend import get_backend
        self.lm = get_backend(model_ref)
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        tasks = self._sample([BRAINSTORM_PROMPT] * BRAINSTORM_SAMPLES, [seed + i for i in range(BRAINSTORM_SAMPLES)], 12)
        self.tasks = sorted({t.rstrip(".").lower() for t in tasks if 0 < len(t) <= 60}) or ["developer"]

    def _chat(self, user: str) -> list[int]:
        chat = self.lm.tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
            tokenize=False, add_generation_prompt=True)
        return self.lm.encode(chat)

    def _sample(self, prompts: list[str], seeds: list[int], max_new_tokens: int) -> list[str]:
        samples = self.lm.sample([self._chat(p) for p in prompts], seeds, stop=["<|im_end|>", "\n"],
                                 max_new_tokens=max_new_tokens, temperature=self.temperature)
        return [clean_generation(s.text) for s in samples]

    def write(self, docs: list[str], seeds: list[int]) -> list[tuple[str, str]]:
        """(task kind, request) per document, the task kind drawn by the seed."""
        tasks = [self.tasks[s % len(self.tasks)] for s in seeds]
        requests = self._sample([REQUEST_PROMPT.format(doc=d, task=t) for d, t in zip(docs, tasks)], seeds,
                                self.max_new_tokens)
        return list(zip(tasks, requests))


def _read_done(path: Path) -> list[dict]:
    """The complete records of a synthetic file; a line cut short by a kill is dropped and the file
    truncated to the last complete line (its document is written again, with the same seed)."""
    if not path.exists():
        return []
    records, good = [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                break
            if not line.endswith(b"\n"):
                records.pop()
                break
            good += len(line)
    with open(path, "r+b") as f:
        f.truncate(good)
    return records


def synthesize(tools: ToolSet, n: int, out: str | Path, writer: str = "templates", lm: str | None = None,
               seed: int = 0, log=print) -> list[dict]:
    """Write n synthetic queries for the documents of `tools` to out/synthetic.jsonl (resuming a
    file written with the same settings) and return its records."""
    from toolformer.assets import DEFAULT_LM
    if writer not in WRITERS:
        raise UserValueError(f"unknown writer {writer!r}: use one of {', '.join(WRITERS)}")
    if n < 1:
        raise UserValueError(f"--synthesize needs at least 1 query, got {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"n": n, "writer": writer, "lm": lm or DEFAULT_LM if writer != "templates" else None, "seed": seed,
            "tools": hashlib.sha256("\0".join(tools.names + tools.texts).encode()).hexdigest()[:16],
            "templates": hashlib.sha256("\0".join(TEMPLATES + PERSONAS).encode()).hexdigest()[:16]}
    meta_path, path = out / META_FILE, out / SYNTHETIC_FILE
    if meta_path.exists() and json.loads(meta_path.read_text()) != meta:
        raise UserValueError(f"{out} holds synthetic queries written with other settings "
                             f"({meta_path}); use another --out")
    meta_path.write_text(json.dumps(meta) + "\n")
    done = _read_done(path)
    todo = [(i, slot) for i, count in enumerate(spread(n, len(tools))) for slot in range(count)][len(done):]
    if todo:
        log(f"synthesizing {len(todo)} of {n} queries ({writer}) for {len(tools)} documents"
            + (f", resuming after {len(done)}" if done else ""))
    bm25 = BM25(tools.texts)
    lm_writer = LMWriter(meta["lm"], seed) if any(writer_of(writer, s) == "lm" for _, s in todo) else None
    fields = tools.fields or tuple({"api_name": name} for name in tools.names)
    with open(path, "a") as f:
        for start in range(0, len(todo), CHUNK_DOCS * max(1, n // len(tools))):
            chunk = todo[start:start + CHUNK_DOCS * max(1, n // len(tools))]
            records = _write_chunk(tools, fields, chunk, writer, lm_writer, seed, bm25)
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
            done += records
            log(f"  {len(done)}/{n} queries written to {path}")
    return done


def _write_chunk(tools: ToolSet, fields, chunk, writer: str, lm_writer, seed: int, bm25: BM25) -> list[dict]:
    position = {name: i for i, name in enumerate(tools.names)}
    records = []
    for i, slot in chunk:
        name = tools.names[i]
        records.append({"tool": name, "slot": slot, "writer": writer_of(writer, slot),
                        "seed": slot_seed(seed, name, slot)})
    by_lm = [r for r in records if r["writer"] == "lm"]
    if by_lm:
        docs = [prompt_doc(fields[position[r["tool"]]], tools.text_of(r["tool"])) for r in by_lm]
        for r, (task, request) in zip(by_lm, lm_writer.write(docs, [r["seed"] for r in by_lm])):
            r["task"], r["query"] = task, request
    for r in records:
        if r["writer"] == "templates":
            r["query"], r["task"] = template_query(fields[position[r["tool"]]], tools.text_of(r["tool"]),
                                                   r["seed"])
    scored = [r for r in records if r["query"]]
    if scored:
        ranks, wrong = round_trip(bm25, tools, [r["query"] for r in scored], [r["tool"] for r in scored])
        for r, rank, negatives in zip(scored, ranks, wrong):
            r["bm25_rank"], r["negatives"] = rank, negatives
    for r in records:
        r["empty"] = not r["query"]
    return records


def round_trip(bm25: BM25, tools: ToolSet, queries: list[str], gold: list[str]) -> tuple[list[int], list[list[str]]]:
    """Per query: the BM25 rank of its own document (1 = first), and the best-ranked wrong ones."""
    scores = bm25.scores(queries)
    ids, _ = top_k(scores, len(tools))
    ranks, wrong = [], []
    for row, name in zip(ids, gold):
        ranked = [tools.names[j] for j in row]
        ranks.append(ranked.index(name) + 1)
        wrong.append([t for t in ranked if t != name][:HARD_NEGATIVES])
    return ranks, wrong


def synthetic_pairs(records: list[dict], tools: ToolSet, round_trip_k: int, hard_negatives: int) -> tuple[list[Pair], dict]:
    """Training pairs from synthetic records: empty generations dropped, a repeat of a query kept
    once, and with round_trip_k > 0 only the queries one of whose documents BM25 ranks in the top k.
    Every document of a query's api_name is relevant to it, never its negative: Gorilla lists vgg11
    and vgg13 under "vgg-nets" with one description, a hit by api_name takes either, and training
    must not push apart what no query can tell apart. So a query written for several documents of
    one api_name is one pair; written for several api_names, it cannot say which one it wants
    ("Which API can I use for Image Classification?"): dropped. Returns (pairs, what was dropped,
    per writer)."""
    label = tools.api_names
    documents_named: dict[str, list[str]] = {}
    for name in tools.names:
        documents_named.setdefault(label[name], []).append(name)
    documents_of: dict[str, set[str]] = {}
    best_rank: dict[str, int] = {}  # of any document the query was written for
    for r in (r for r in records if not r["empty"]):
        key = r["query"].lower()
        documents_of.setdefault(key, set()).add(r["tool"])
        best_rank[key] = min(best_rank.get(key, r["bm25_rank"]), r["bm25_rank"])
    seen: set[str] = set()
    usable, repeats, ambiguous = [], 0, 0
    for r in records:
        if r["empty"]:
            continue
        key = r["query"].lower()
        if len({label[t] for t in documents_of[key]}) > 1:
            ambiguous += 1
            continue
        if key in seen:  # the same query twice (for one document, or for two of one api_name): one pair
            repeats += 1
            continue
        seen.add(key)
        usable.append(r)
    kept = [r for r in usable if round_trip_k <= 0 or best_rank[r["query"].lower()] <= round_trip_k]
    pairs = []
    for r in kept:
        relevant = documents_named[label[r["tool"]]]
        pairs.append(Pair(r["query"], tools.text_of(r["tool"]),
                          tuple(tools.text_of(t) for t in r["negatives"] if t not in relevant)[:hard_negatives],
                          frozenset(tools.text_of(t) for t in relevant)))
    by_writer = {w: {"written": sum(r["writer"] == w for r in records),
                     "empty": sum(r["writer"] == w and r["empty"] for r in records),
                     "kept": sum(r["writer"] == w for r in kept)} for w in ("lm", "templates")}
    return pairs, {"synthetic": len(records), "empty_generations": sum(r["empty"] for r in records),
                   "ambiguous": ambiguous, "repeats": repeats,
                   "shared_by_one_api_name": sum(len(documents_of[r["query"].lower()]) > 1 for r in kept),
                   "removed_by_round_trip": len(usable) - len(kept), "round_trip_k": round_trip_k,
                   "pairs": len(kept), "by_writer": by_writer}
