"""Tool retriever: InfoNCE and batch layout by hand, pooling under both paddings, metrics on
hand-made rankings, bad input, ANN recall, kept-call queries, training on a toy set, save/load,
the CLI, and one zero-shot check with the real all-MiniLM-L6-v2."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from toolformer.config import RetrieverTraining
from toolformer.errors import UserValueError
from toolformer.retrieval import rank_tools
from toolformer.retrieval.bm25 import BM25
from toolformer.retrieval.data import (Pair, Query, QueryStats, ToolSet, kept_call_queries, query_pairs, read_pairs,
                                       read_queries, read_tool_set, registry_tools, split)
from toolformer.retrieval.encoders import LLMEncoder, load_encoder, pool_hidden, save_retriever
from toolformer.retrieval.index import IVFIndex, ToolIndex, tool_embeddings, top_k
from toolformer.retrieval.metrics import evaluate, ranking_metrics
from toolformer.retrieval.train import batch_candidates, info_nce, mine_hard_negatives, train
from toolformer.run.records import BadRecord, ReadStats, dumps

# a toy tool set and queries: the words linking a query to its tool must be learnt
TOY_TOOLS = {"Calculator": "calculator arithmetic", "Calendar": "calendar date",
             "WikiSearch": "encyclopedia article", "QA": "question answer"}
TOY_QUERIES = [("add two numbers", "Calculator"), ("multiply the numbers", "Calculator"),
               ("sum of numbers", "Calculator"), ("numbers divided", "Calculator"),
               ("what day is today", "Calendar"), ("which month and year", "Calendar"),
               ("today is the day", "Calendar"), ("the year now", "Calendar"),
               ("famous people and places", "WikiSearch"), ("history of places", "WikiSearch"),
               ("people in history", "WikiSearch"), ("facts about places", "WikiSearch"),
               ("who founded it", "QA"), ("where is it", "QA"), ("who is he", "QA"), ("when was it", "QA")]


def word_tokenizer():
    """A whitespace word-level tokenizer over the toy vocabulary, with pad and eos tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = sorted({w for text in [*TOY_TOOLS.values(), *(q for q, _ in TOY_QUERIES)] for w in text.split()})
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *words])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_llm_encoder(pooling: str = "last", arch: str = "llama") -> LLMEncoder:
    """A random 2-layer decoder: Llama (rotary positions) or GPT-2 (absolute positions)."""
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel
    tok = word_tokenizer()
    torch.manual_seed(0)
    if arch == "llama":
        model = LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
    else:
        model = GPT2Model(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256))
    return LLMEncoder(model.eval(), tok, pooling=pooling, instruction=None, max_length=32)


def toy_data():
    tools = ToolSet(tuple(TOY_TOOLS), tuple(TOY_TOOLS.values()))
    queries = [Query(q, frozenset([t]), q) for q, t in TOY_QUERIES]
    return tools, queries


# ---------------------------------------------------------------------------- loss and batches

def test_info_nce_equals_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    # logits = q·d / 0.5: row 0 [2, 0, 1.6], row 1 [0, 2, 1.2], row 2 [1.2, 1.6, 1.92]; labels = diagonal
    rows = [math.log(1 + math.exp(-2) + math.exp(-0.4)),      # 0.590924
            math.log(1 + math.exp(-2) + math.exp(-0.8)),      # 0.460373
            math.log(1 + math.exp(-0.72) + math.exp(-0.32))]  # 0.794304
    loss = info_nce(q, d, torch.tensor([0, 1, 2]), None, temperature=0.5)
    assert loss.item() == pytest.approx(sum(rows) / 3, abs=1e-6)
    assert loss.item() == pytest.approx(0.615200, abs=1e-6)
    # a masked cell leaves the softmax: row 0 without column 2
    mask = torch.tensor([[False, False, True], [False] * 3, [False] * 3])
    loss = info_nce(q, d, torch.tensor([0, 1, 2]), mask, temperature=0.5)
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-2)) + rows[1] + rows[2]) / 3, abs=1e-6)


def test_batch_candidates_positives_first_then_hard_negatives():
    pairs = [Pair("q0", "A", ("N0",), frozenset({"A"})), Pair("q1", "B", (), frozenset({"B"}))]
    texts, labels, mask = batch_candidates(pairs, [("X", "Y"), ("Z", "W")])
    assert texts == ["A", "B", "N0", "X", "Y", "Z", "W"]
    assert labels == [0, 1]
    assert not any(any(row) for row in mask)
    # one logits row per query, one column per candidate: in-batch positive of the other query included
    vectors = {t: torch.nn.functional.one_hot(torch.tensor(i), len(texts)).float() for i, t in enumerate(texts)}
    q = torch.stack([vectors["A"], vectors["B"]])
    d = torch.stack([vectors[t] for t in texts])
    logits = q @ d.T
    assert logits.shape == (2, 7)
    assert logits.argmax(1).tolist() == labels


def test_batch_candidates_dedupe_and_mask_false_negatives():
    # q0 needs A (B is also right for it), q1 needs A too, q2 needs B; q2's mined negative is A
    pairs = [Pair("q0", "A", (), frozenset({"A", "B"})), Pair("q1", "A", (), frozenset({"A"})),
             Pair("q2", "B", (), frozenset({"B"}))]
    texts, labels, mask = batch_candidates(pairs, [("C",), ("B",), ("A",)])
    assert texts == ["A", "B", "C"]
    assert labels == [0, 0, 1]
    assert mask == [[False, True, False], [False, False, False], [False, False, False]]


# ---------------------------------------------------------------------------- pooling

def test_last_token_pooling_under_left_and_right_padding():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.equal(pool_hidden(hidden, right, "last"), torch.stack([hidden[0, 2], hidden[1, 1]]))
    assert torch.equal(pool_hidden(hidden, left, "last"), torch.stack([hidden[0, 3], hidden[1, 3]]))
    assert torch.allclose(pool_hidden(hidden, right, "mean"), torch.stack([hidden[0, :3].mean(0), hidden[1, :2].mean(0)]))
    assert torch.allclose(pool_hidden(hidden, left, "mean"), torch.stack([hidden[0, 1:].mean(0), hidden[1, 2:].mean(0)]))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_llm_embedding_is_independent_of_padding(pooling, side, arch):
    encoder = tiny_llm_encoder(pooling, arch=arch)
    encoder.tokenizer.padding_side = side
    short, long = "add two numbers", "famous people and places in history of the year"
    with torch.no_grad():
        alone = encoder.embed([short], is_query=False)
        batched = encoder.embed([long, short, long], is_query=False)
    assert torch.allclose(batched[1], alone[0], atol=1e-5)
    assert not torch.allclose(batched[0], alone[0], atol=1e-3)
    assert torch.allclose(batched.norm(dim=1), torch.ones(3))


def test_llm_encoder_appends_eos_and_prefixes_queries():
    encoder = tiny_llm_encoder()
    tok = encoder.tokenizer
    seen = []
    encoder.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].tolist()), with_kwargs=True)
    encoder.embed(["who is he", "answer"], is_query=False)
    ids = tok.convert_tokens_to_ids
    assert seen[0] == [ids(["who", "is", "he", "<eos>"]), ids(["answer", "<eos>", "<pad>", "<pad>"])]
    encoder.instruction = "Find the tool"
    encoder.embed(["who is he"], is_query=True)
    expected = tok("Instruct: Find the tool\nQuery: who is he", add_special_tokens=False)["input_ids"]
    assert seen[1] == [expected + [tok.eos_token_id]] and len(expected) > 3


# ---------------------------------------------------------------------------- metrics

def test_metrics_one_relevant_item():
    ranked = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "a"], ["b", "c"]]
    relevant = [frozenset("a")] * 4
    m = ranking_metrics(ranked, relevant, ks=(1, 2, 5))
    assert m["recall@1"] == pytest.approx(1 / 4)
    assert m["recall@2"] == pytest.approx(2 / 4)
    assert m["recall@5"] == pytest.approx(3 / 4)
    assert m["mrr"] == pytest.approx(round((1 + 1 / 2 + 1 / 3 + 0) / 4, 4))          # 0.4583
    assert m["ndcg@10"] == pytest.approx(round((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 4, 4))  # 0.5327


def test_metrics_several_relevant_items():
    m = ranking_metrics([["x", "a", "y", "b"]], [frozenset({"a", "b"})], ks=(1, 2, 5))
    assert (m["recall@1"], m["recall@2"], m["recall@5"], m["mrr"]) == (0, 0.5, 1.0, 0.5)
    dcg, idcg = 1 / math.log2(3) + 1 / math.log2(5), 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(round(dcg / idcg, 4))                       # 0.6509
    assert ranking_metrics([["a", "b"]], [frozenset({"a", "b"})])["ndcg@10"] == 1.0
    # a relevant item beyond rank 10 adds nothing to NDCG@10 but counts in the ideal ranking
    m = ranking_metrics([["a", *"cdefghijkl", "b"]], [frozenset({"a", "b"})])
    assert m["ndcg@10"] == pytest.approx(round(1 / idcg, 4))


# ---------------------------------------------------------------------------- input files

def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_pairs_line_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", [json.dumps({"query": "q", "positive": "p", "negatives": ["n"]}),
                                                  json.dumps({"query": "q2", "negatives": []})])
    with pytest.raises(BadRecord, match=r"pairs\.jsonl:2: needs a non-empty string 'positive'"):
        read_pairs(path)
    write_lines(path, ['{"query": "q", "positive": "p"', ""])
    with pytest.raises(BadRecord, match=r"pairs\.jsonl:1: bad JSON"):
        read_pairs(path)
    write_lines(path, [json.dumps({"query": "q", "positive": "p", "negatives": ["p"]})])
    with pytest.raises(BadRecord, match=r"pairs\.jsonl:1: the positive is also listed as a negative"):
        read_pairs(path)


def test_queries_unknown_gold_is_counted_not_scored_and_bad_lines_error_or_are_counted(tmp_path):
    tools, _ = toy_data()
    path = write_lines(tmp_path / "q.jsonl", [json.dumps({"query": "add two numbers", "tool": "Calculator"}),
                                              json.dumps({"query": "x", "tool": ["QA", "Calendar"]}),
                                              json.dumps({"query": "y", "tool": "Translator"}),
                                              json.dumps({"query": "z", "tool": ["QA", "Translator"]}),
                                              "not json"])
    with pytest.raises(BadRecord, match=r"q\.jsonl:5: bad JSON"):
        read_queries(path, tools)
    stats = QueryStats()
    queries = read_queries(path, tools, skip_bad=True, stats=stats)
    assert [q.relevant for q in queries] == [frozenset({"Calculator"}), frozenset({"QA", "Calendar"})]
    assert stats.skipped_bad == 1 and stats.gold_not_in_tools == 2
    assert stats.gold_not_in_tools_examples == [f"{path}:3: Translator", f"{path}:4: Translator"]


def test_gorilla_style_tool_set_and_queries(tmp_path):
    api = write_lines(tmp_path / "api.jsonl", [
        json.dumps({"api_call": "hub.load('a')", "description": "Text embedding model", "domain": "Text embedding",
                    "functionality": "Embedding"}),
        json.dumps({"api_call": "hub.load('b')", "description": "Image classifier"}),
        json.dumps({"api_call": "hub.load('a')", "description": "the same API again"})])
    tools, repeated = read_tool_set(api)
    assert tools.names == ("hub.load('a')", "hub.load('b')") and repeated == 1
    assert tools.fields[0] == {"api_name": "hub.load('a')", "domain": "Text embedding", "functionality": "Embedding",
                               "description": "Text embedding model"}
    assert tools.texts[0] == "hub.load('a')\nDomain: Text embedding\nFunctionality: Embedding\nText embedding model"
    code = "###Instruction: Embed my sentences.\n###Output: <<<api_call>>>: hub.load('a')"
    ev = write_lines(tmp_path / "eval.json", [json.dumps({"code": code, "api_call": "hub.load('a')"})])
    assert read_queries(ev, tools) == [Query("Embed my sentences.", frozenset({"hub.load('a')"}),
                                                 "Embed my sentences.")]
    write_lines(api, [json.dumps({"api_call": "x"})])
    with pytest.raises(BadRecord, match=r"api\.jsonl:1: needs a string 'description'"):
        read_tool_set(api)
    write_lines(api, [json.dumps({"description": "no name"})])
    with pytest.raises(BadRecord, match=r"api\.jsonl:1: needs a string 'name' \(or 'api_call'\)"):
        read_tool_set(api)
    write_lines(api, [json.dumps({"name": "A", "description": "a"}), json.dumps({"name": "B", "description": "b"}),
                      json.dumps({"name": "A", "description": "a again"})])
    with pytest.raises(BadRecord, match=r"api\.jsonl:3: tool name 'A' repeats line 1"):
        read_tool_set(api)
    write_lines(api, [json.dumps({"name": "A", "description": "a"}), '{"name": "B", '])
    with pytest.raises(BadRecord, match=r"api\.jsonl:2: bad JSON"):
        read_tool_set(api)


def scored(doc_id: str, position: int, tool: str, kept: bool, n: int, usefulness: float = 1.0) -> dict:
    return {"id": f"c{n}", "doc_id": doc_id, "tool": tool, "window": 0, "position": position, "token_index": 0,
            "p_start": 0.5, "input": "1+1", "call": f"[{tool}(1+1)]", "result": "2", "error": None,
            "latency_ms": 1.0, "loss_plus": 1.0, "loss_no_call": 2.0, "loss_no_result": 2.0, "loss_minus": 2.0,
            "usefulness": usefulness, "kept": kept, "reason": None}


def test_kept_call_queries_from_a_run(tmp_path, capsys):
    run = tmp_path / "r1"
    (run / "calculator").mkdir(parents=True)
    (run / "calendar").mkdir()
    text = "x" * 500 + "The total is 12 apples. Today"
    write_lines(run / "documents.jsonl", [dumps({"id": "d1", "text": text, "meta": {}}),
                                          dumps({"id": "d2", "text": "Short one.", "meta": {}})])
    write_lines(run / "calculator" / "scored.jsonl", [
        dumps(scored("d1", 513, "Calculator", True, 1)), dumps(scored("d1", 513, "Calculator", True, 2)),
        dumps(scored("d1", 520, "Calculator", False, 3, usefulness=0.3)),
        dumps(scored("d1", 525, "Calculator", False, 6, usefulness=0.1)), dumps(scored("d2", 6, "Calculator", True, 4))])
    write_lines(run / "calendar" / "scored.jsonl", [dumps(scored("d1", 513, "Calendar", True, 5))])
    tools, _ = toy_data()
    queries = kept_call_queries("r1", tmp_path, tools, window_chars=400)
    assert queries == [Query(text[113:513].strip(), frozenset({"Calculator", "Calendar"}), "r1/d1"),
                       Query("Short", frozenset({"Calculator"}), "r1/d2")]
    assert queries[0].text.endswith("The total is")
    # a usefulness floor instead of the run's kept flag: 520 (0.3) comes in, 525 (0.1) does not
    loose = kept_call_queries("r1", tmp_path, tools, window_chars=400, min_usefulness=0.25)
    assert [len(q.text) for q in loose] == [len(text[113:513].strip()), len(text[120:520].strip()), 5]
    # a call at the document start has no text before it: skipped, and counted
    write_lines(run / "calendar" / "scored.jsonl", [dumps(scored("d1", 513, "Calendar", True, 5)),
                                                    dumps(scored("d2", 0, "Calendar", True, 7))])
    stats = ReadStats()
    assert kept_call_queries("r1", tmp_path, tools, window_chars=400, stats=stats) == queries
    assert stats.skipped_empty == 1
    # the CLI on the same run, against the registered tools, with BM25 only
    from toolformer.cli import main
    assert main(["retriever", "eval", "--run", "r1", "--runs-dir", str(tmp_path), "--retriever", "bm25", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (figures["queries"], figures["tools"], list(figures["results"])) == (2, 4, ["bm25"])
    assert figures["queries_per_tool"] == {"Calculator": 2, "Calendar": 1}
    by_tool = figures["results"]["bm25"]["recall@1_by_tool"]
    alone = [evaluate(BM25, registry_tools(), [q])["recall@1"] for q in queries]  # d1, d2
    assert by_tool == {"Calculator": round((alone[0] + alone[1]) / 2, 4), "Calendar": alone[0]}
    # runs pool: the same run twice gives every query twice, each keyed by its run
    (tmp_path / "r2").symlink_to(run)
    assert main(["retriever", "eval", "--run", "r1", "--run", "r2", "--runs-dir", str(tmp_path),
                 "--retriever", "bm25", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["queries"] == 4
    write_lines(run / "calendar" / "scored.jsonl", [dumps(scored("d9", 1, "Calendar", True, 5))])
    with pytest.raises(BadRecord, match=r"calendar/scored\.jsonl:1: doc_id 'd9' is not in"):
        kept_call_queries("r1", tmp_path, tools)


def test_holdout_split_is_fixed_disjoint_and_by_key():
    queries = [Query(f"text {i}", frozenset({"QA"}), f"doc{i // 3}") for i in range(300)]
    held, rest = split(queries, 0.2, True), split(queries, 0.2, False)
    assert len(held) + len(rest) == 300 and not set(held) & set(rest)
    assert 30 <= len(held) <= 90
    assert {q.key for q in held}.isdisjoint({q.key for q in rest})  # a document never straddles
    assert held == split(queries, 0.2, True)


# ---------------------------------------------------------------------------- search

def test_ivf_recall_at_10_against_exact_search():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 32))
    vectors = centres[rng.integers(50, size=5000)] + 0.6 * rng.normal(size=(5000, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    queries = vectors[rng.choice(5000, 200, replace=False)] + 0.3 * rng.normal(size=(200, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact, _ = top_k(queries @ vectors.T, 10)
    ann, scores = IVFIndex(vectors).search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ann, exact)])
    assert recall >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    assert sum(len(x) for x in IVFIndex(vectors).lists) == 5000


def test_tool_embeddings_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLFORMER_CACHE", str(tmp_path))
    encoder = tiny_llm_encoder()
    encoder.fingerprint = "tiny-test"
    first = tool_embeddings(encoder, list(TOY_TOOLS.values()))
    assert len(list((tmp_path / "retriever").glob("*.npy"))) == 1
    encoder.encode = None  # a second call must not encode again
    assert np.array_equal(tool_embeddings(encoder, list(TOY_TOOLS.values())), first)


def test_bm25_ranks_the_tool_sharing_the_words():
    tools, _ = toy_data()
    ranked = ToolIndex(BM25, tools).search(["which calendar date", "arithmetic please"], 2)
    assert [row[0][0] for row in ranked] == ["Calendar", "Calculator"]
    assert ranked[0][0][1] > ranked[0][1][1]
    # a query with no terms at all (stopwords, punctuation) scores zero everywhere instead of failing
    scores = BM25(list(tools.texts)).scores(["the of and", "12 + 7 =", "calendar"])
    assert scores.shape == (3, len(tools)) and not scores[0].any() and scores[2].any()


# ---------------------------------------------------------------------------- training

def test_training_raises_recall_at_1_on_a_toy_set():
    tools, queries = toy_data()
    encoder = tiny_llm_encoder()
    before = evaluate(encoder, tools, queries)["recall@1"]
    settings = RetrieverTraining(epochs=25, batch_size=8, lr=3e-3, temperature=0.05, hard_negatives=2)
    history = train(encoder, query_pairs(queries, tools), list(tools.texts), settings, log=lambda *_: None)
    after = evaluate(encoder, tools, queries)["recall@1"]
    assert before <= 0.5 and after >= 0.9
    assert history[-1]["loss"] < history[0]["loss"] and history[0]["steps"] == 2


def test_mined_hard_negatives_are_the_top_wrong_texts():
    tools, queries = toy_data()
    encoder = tiny_llm_encoder()
    pairs = query_pairs(queries[:3], tools)
    mined = mine_hard_negatives(encoder, pairs, list(tools.texts), 2)
    scores = encoder.encode([p.query for p in pairs], True) @ encoder.encode(list(tools.texts), False).T
    for p, row, got in zip(pairs, scores, mined):
        wrong = [tools.texts[j] for j in np.argsort(-row) if tools.texts[j] != p.positive]
        assert got == tuple(wrong[:2])


def test_trained_llm_retriever_saves_and_loads(tmp_path):
    tools, queries = toy_data()
    encoder = tiny_llm_encoder(pooling="mean")
    train(encoder, query_pairs(queries, tools), list(tools.texts),
            RetrieverTraining(epochs=1, batch_size=8, lr=3e-3), log=lambda *_: None)
    save_retriever(encoder, tmp_path / "ret", {"note": "test"})
    config = json.loads((tmp_path / "ret" / "retriever.json").read_text())
    assert (config["encoder"], config["pooling"], config["instruction"]) == ("llm", "mean", None)
    loaded = load_encoder(str(tmp_path / "ret"))
    assert isinstance(loaded, LLMEncoder) and loaded.pooling == "mean"
    texts = list(tools.texts)
    assert np.allclose(loaded.encode(texts, False), encoder.encode(texts, False), atol=1e-5)


def test_lora_trains_only_adapters_and_merges_on_save(tmp_path):
    tools, queries = toy_data()
    encoder = tiny_llm_encoder()
    base = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    encoder.add_lora(4)
    trainable = [n for n, p in encoder.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    train(encoder, query_pairs(queries, tools), list(tools.texts),
            RetrieverTraining(epochs=2, batch_size=8, lr=1e-2), log=lambda *_: None)
    save_retriever(encoder, tmp_path / "ret", {})
    loaded = load_encoder(str(tmp_path / "ret"))
    assert set(dict(loaded.model.named_parameters())) == set(base)  # merged: a plain model again
    texts = list(tools.texts)
    assert np.allclose(loaded.encode(texts, False), encoder.encode(texts, False), atol=1e-5)


def test_lora_on_top_layers_trains_only_the_last_blocks():
    encoder = tiny_llm_encoder()
    encoder.add_lora(4, top_layers=1)
    trainable = [n for n, p in encoder.model.named_parameters() if p.requires_grad]
    # block 1 of 2: seven linear layers (q k v o gate up down), each with lora_A and lora_B
    assert len(trainable) == 14 and all(".layers.1." in n and "lora_" in n for n in trainable)


def tiny_sentence_model(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT in sentence-transformers layout, on MiniLM's vocabulary."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from toolformer.assets import embedded_path
    torch.manual_seed(0)
    bert = folder / "bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(bert)
    BertTokenizerFast.from_pretrained(embedded_path("all-minilm-l6-v2")).save_pretrained(bert)
    transformer = models.Transformer(str(bert), max_seq_length=64)
    SentenceTransformer(modules=[transformer, models.Pooling(32, "mean"), models.Normalize()]).save(str(folder / "st"))
    return folder / "st"


def test_cli_train_eval_search_with_a_sentence_transformer(tmp_path, capsys):
    from toolformer.cli import main
    base = tiny_sentence_model(tmp_path)
    tools = write_lines(tmp_path / "tools.jsonl", [json.dumps({"name": n, "description": d}) for n, d in TOY_TOOLS.items()])
    queries = write_lines(tmp_path / "q.jsonl", [json.dumps({"query": q, "tool": t}) for q, t in TOY_QUERIES])
    out = tmp_path / "trained"
    assert main(["retriever", "train", "--queries", str(queries), "--tools", str(tools), "--encoder", str(base),
                 "--out", str(out), "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["pairs"] == 16 and figures["pool"] == 4 and len(figures["history"]) == 2
    assert json.loads((out / "retriever.json").read_text())["encoder"] == "sentence-transformers"
    assert main(["retriever", "eval", "--queries", str(queries), "--tools", str(tools), "--retriever", str(out),
                 "--holdout", "0.5", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    held_out = len(split(toy_data()[1], 0.5, True))
    assert figures["queries"] == held_out and figures["tools"] == 4
    assert set(figures["results"]) == {str(out), "bm25"}
    assert set(figures["results"]["bm25"]) >= {"recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"}
    assert main(["retriever", "search", "add two numbers", "--tools", str(tools), "--retriever", str(out),
                 "-k", "2", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(json.loads(lines[-1])["ranked"]) == 2 and len(lines) == 3


def test_cli_rejects_bad_queries_with_file_and_line(tmp_path, capsys):
    from toolformer.cli import main
    tools = write_lines(tmp_path / "tools.jsonl", [json.dumps({"name": "QA", "description": "answers"})])
    queries = write_lines(tmp_path / "q.jsonl", [json.dumps({"query": "who", "tool": "QA"}), '{"query": 3}'])
    assert main(["retriever", "eval", "--queries", str(queries), "--tools", str(tools), "--retriever", "bm25"]) == 2
    assert "q.jsonl:2: needs a non-empty 'query'" in capsys.readouterr().err
    # a file that is not there is one line naming it, not a traceback
    assert main(["retriever", "eval", "--queries", str(tmp_path / "none.jsonl"), "--tools", str(tools),
                 "--retriever", "bm25"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {tmp_path / 'none.jsonl'}: no such file"]


def test_a_folder_that_holds_no_model_is_a_one_line_error_naming_it(tmp_path, capsys):
    from toolformer.cli import main
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["retriever", "search", "x", "--retriever", str(empty)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: tool retriever {str(empty)!r}: expected 'bm25', a folder `toolformer retriever train` wrote, or an "
        f"embedder (model folder {str(empty)!r} holds no model: it has no config.json)"]


def test_gold_tools_match_in_any_case_and_unknown_ones_are_listed_with_the_valid_names(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [json.dumps({"query": "add two numbers", "tool": "calculator"}),
                                              json.dumps({"query": "x", "tool": ["qa", "CALENDAR"]})])
    queries = read_queries(path, registry_tools())
    assert [q.relevant for q in queries] == [frozenset({"Calculator"}), frozenset({"QA", "Calendar"})]
    write_lines(path, [json.dumps({"query": "x", "tool": "Translator"})])
    with pytest.raises(UserValueError, match=r"q\.jsonl: no query has its gold tool in the tool set \(Calculator, "
                                             r"Calendar, WikiSearch, QA\); e\.g\. .*q\.jsonl:1: Translator"):
        read_queries(path, registry_tools())


def test_a_queries_file_without_queries_says_so(tmp_path, capsys):
    from toolformer.cli import main
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["retriever", "train", "--queries", str(empty), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {empty}: no queries"]
    assert main(["retriever", "eval", "--queries", str(empty), "--retriever", "bm25"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {empty}: no queries"]


# ---------------------------------------------------------------------------- the real model

@pytest.mark.slow
def test_real_minilm_zero_shot_ranks_our_tools():
    from toolformer.tools import all_tools
    from toolformer.assets import DEFAULT_EMBEDDER
    queries = {"how much is 23 times 19": "Calculator", "what day is it today": "Calendar",
               "The author of War and Peace was": "QA", "search wikipedia for the eiffel tower": "WikiSearch"}
    ranked = rank_tools(DEFAULT_EMBEDDER, list(queries), all_tools(), k=4)
    assert [r[0] for r in ranked] == list(queries.values())
    assert all(sorted(r) == sorted(t.name for t in all_tools()) for r in ranked)


def test_registered_tools_are_retrieved_by_their_uses_in_the_loop():
    """Each tool's uses (questions and sentences it helps with) come before its call-syntax
    examples, within what an encoder reads; BM25 over them offers the right tool for inputs
    shaped like the benchmarks' (with the call-syntax examples alone it offered QA to the math
    problem and Calculator to the others: no shared words but "Question")."""
    from toolformer.tools import all_tools
    for tool in all_tools():
        text = tool.retrieval_text()
        assert tool.uses and all(text.index(u) < text.index("Examples:") for u in tool.uses)
    # the loop's tool sets: the paper keeps QA away from open questions, WikiSearch from LAMA
    every = all_tools()
    but = lambda name: [t for t in every if t.name != name]
    cases = [("Question: A farmer has 24 cows and buys 18 more. How many cows does he have?", every, "Calculator"),
             ("Question: What day of the week will it be in 3 days?", every, "Calendar"),
             ("Question: where is the capital of peru?", but("QA"), "WikiSearch"),
             ("Isaac Newton was born in", but("WikiSearch"), "QA")]
    assert [rank_tools("bm25", [text], tools, k=1)[0][0] for text, tools, _ in cases] == [c[2] for c in cases]
