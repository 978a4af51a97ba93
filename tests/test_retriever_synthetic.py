"""Retriever from documents alone: synthetic queries (spread, templates, round trip, resume),
reciprocal rank fusion and bootstrap figures by hand, and the `train --synthesize` / `eval --json`
contract on a tiny sentence-transformer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from toolformer.retrieval.bm25 import BM25
from toolformer.retrieval.data import QueryStats, read_queries, read_tool_set
from toolformer.retrieval.index import reciprocal_rank_fusion
from toolformer.retrieval.metrics import (bootstrap_ci, bootstrap_indices, by_label, paired_bootstrap,
                                          per_query_metrics)
from toolformer.retrieval.synthesize import (SYNTHETIC_FILE, round_trip, spread, synthesize, synthetic_pairs,
                                             template_query, writer_of)
from test_retriever import tiny_sentence_model, write_lines

APIS = [
    {"api_call": "hub.load('resnet')", "api_name": "ResNet", "domain": "Image Classification",
     "functionality": "Image classification", "description": "A deep residual network that classifies images "
     "into the thousand ImageNet classes.", "performance": {"dataset": "ImageNet"}},
    {"api_call": "hub.load('yolo')", "api_name": "YOLO", "domain": "Object Detection",
     "functionality": "Object detection", "description": "Detects and localises objects such as cars and people "
     "in images in real time."},
    {"api_call": "hub.load('silero')", "api_name": "Silero", "domain": "Speech-To-Text",
     "functionality": "Speech recognition", "description": "Transcribes spoken audio recordings into written text."},
    {"api_call": "hub.load('resnet-wide')", "api_name": "ResNet", "domain": "Image Classification",
     "functionality": "Image classification", "description": "A wide residual network for image classification."},
]


@pytest.fixture()
def api_file(tmp_path):
    return write_lines(tmp_path / "api.jsonl", [json.dumps(a) for a in APIS])


def test_spread_gives_every_document_its_share():
    assert spread(10, 4) == [3, 3, 2, 2] and sum(spread(7, 7)) == 7 and spread(2, 3) == [1, 1, 0]
    assert [writer_of("mixed", s) for s in range(4)] == ["lm", "templates", "lm", "templates"]
    assert writer_of("templates", 0) == "templates"


def test_template_queries_use_the_record_fields_and_the_seed(api_file):
    tools, _ = read_tool_set(api_file)
    fields = tools.fields[2]  # no dataset: the dataset template is never chosen
    queries = {template_query(fields, tools.texts[2], seed) for seed in range(200)}
    assert all("{" not in q and "trained on" not in q for q, _ in queries)
    assert ("I need a model for Speech recognition.", "I need a model for {functionality}.") in queries
    spans = [q for q, t in queries if t == "Find an API that does this: {span}"]
    assert spans and all(q.removeprefix("Find an API that does this: ").rstrip(".") in fields["description"]
                         for q in spans)
    assert template_query(fields, tools.texts[2], 7) == template_query(fields, tools.texts[2], 7)


def test_round_trip_ranks_and_hard_negatives_follow_bm25(api_file):
    tools, _ = read_tool_set(api_file)
    bm25 = BM25(tools.texts)
    queries = ["transcribe my spoken audio recordings", "residual network classifies images"]
    ranks, wrong = round_trip(bm25, tools, queries, ["hub.load('silero')", "hub.load('yolo')"])
    order = np.argsort(-bm25.scores(queries[1:]), kind="stable")[0]
    assert ranks[0] == 1 and ranks[1] == list(order).index(1) + 1 and ranks[1] > 1
    assert wrong[1][0] in ("hub.load('resnet')", "hub.load('resnet-wide')") and "hub.load('yolo')" not in wrong[1]


def test_synthetic_pairs_drop_empty_ambiguous_and_failed_round_trips(api_file):
    tools, _ = read_tool_set(api_file)
    rec = lambda tool, q, rank, writer="templates": {  # noqa: E731
        "tool": tool, "query": q, "writer": writer, "empty": not q, "bm25_rank": rank,
        "negatives": ["hub.load('resnet-wide')", "hub.load('yolo')"]}
    records = [rec("hub.load('resnet')", "classify my photos", 1), rec("hub.load('silero')", "", None, "lm"),
               rec("hub.load('resnet')", "Image models?", 4), rec("hub.load('resnet-wide')", "image models?", 2),
               rec("hub.load('resnet')", "a model please", 1), rec("hub.load('yolo')", "a model please", 1),
               rec("hub.load('silero')", "speech to text please", 4, "lm"), rec("hub.load('yolo')", "find cars", 1, "lm"),
               rec("hub.load('yolo')", "Find cars", 1)]
    pairs, figures = synthetic_pairs(records, tools, round_trip_k=3, hard_negatives=1)
    assert [p.query for p in pairs] == ["classify my photos", "Image models?", "find cars"]
    resnet, wide, yolo = (tools.text_of(f"hub.load('{n}')") for n in ("resnet", "resnet-wide", "yolo"))
    # every document of the query's api_name (ResNet) is relevant, so the twin is never a negative
    assert pairs[0].positive == resnet and pairs[0].negatives == (yolo,) and pairs[0].relevant == {resnet, wide}
    assert pairs[2].relevant == {yolo}
    # written for both ResNet documents: one pair, and the round trip passes on the twin's rank (2), not its own (4)
    assert pairs[1].positive == resnet and pairs[1].relevant == {resnet, wide} and pairs[1].negatives == (yolo,)
    assert figures["empty_generations"] == 1 and figures["ambiguous"] == 2 and figures["repeats"] == 2
    assert figures["shared_by_one_api_name"] == 1 and figures["removed_by_round_trip"] == 1
    assert figures["by_writer"]["lm"] == {"written": 3, "empty": 1, "kept": 1}
    assert len(synthetic_pairs(records, tools, round_trip_k=0, hard_negatives=1)[0]) == 4


def test_synthesis_resumes_to_the_same_file_after_a_cut(api_file, tmp_path, tiny_model_dir):
    tools, _ = read_tool_set(api_file)
    full = synthesize(tools, 6, tmp_path / "a", writer="mixed", lm=str(tiny_model_dir), seed=3, log=lambda *_: None)
    assert len(full) == 6 and [r["tool"] for r in full] == [tools.names[i] for i in (0, 0, 1, 1, 2, 3)]
    assert [r["writer"] for r in full] == ["lm", "templates"] * 2 + ["lm", "lm"]
    assert all(("bm25_rank" in r) != r["empty"] for r in full)
    text = (tmp_path / "a" / SYNTHETIC_FILE).read_text()
    lines = text.splitlines(keepends=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / SYNTHETIC_FILE).write_text("".join(lines[:3]) + lines[3][:10])  # killed mid-line
    (tmp_path / "b" / "synthetic.json").write_text((tmp_path / "a" / "synthetic.json").read_text())
    again = synthesize(tools, 6, tmp_path / "b", writer="mixed", lm=str(tiny_model_dir), seed=3, log=lambda *_: None)
    assert again == full and (tmp_path / "b" / SYNTHETIC_FILE).read_text() == text
    with pytest.raises(Exception, match="written with other settings"):
        synthesize(tools, 6, tmp_path / "b", writer="templates", seed=3, log=lambda *_: None)


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([[["a", "b", "c"]], [["c", "b", "d"]]], k=1)
    # a: 1/2; b: 1/3 + 1/3; c: 1/4 + 1/2; d: 1/4
    assert fused == [["c", "b", "a", "d"]]
    assert reciprocal_rank_fusion([[["x", "y"]], [["y", "x"]]], k=60) == [["x", "y"]]  # a tie keeps the first order


def test_bootstrap_interval_and_paired_test_by_hand():
    draws = np.array([[0, 0, 1, 1], [2, 3, 2, 3], [0, 1, 2, 3]])
    values = np.array([1.0, 1.0, 0.0, 0.0])
    assert bootstrap_ci(values, draws) == [round(np.quantile([1.0, 0.0, 0.5], 0.025), 4),
                                           round(np.quantile([1.0, 0.0, 0.5], 0.975), 4)]
    better = paired_bootstrap(np.zeros(50), np.ones(50), bootstrap_indices(50, 200))
    assert better == {"difference": 1.0, "ci": [1.0, 1.0], "p_value": round(1 / 200, 4)}
    same = paired_bootstrap(np.array([1.0, 0.0] * 20), np.array([1.0, 0.0] * 20), bootstrap_indices(40, 100))
    assert same["difference"] == 0.0 and same["p_value"] == 1.0


def test_hits_judged_by_api_name_keep_each_name_once():
    labels = {"r1": "ResNet", "r2": "ResNet", "y": "YOLO", "s": "Silero"}
    ranked, relevant = by_label([["r1", "r2", "y"], ["y", "r1", "s"]], [frozenset({"r2"}), frozenset({"s"})], labels)
    assert ranked == [["ResNet", "YOLO"], ["YOLO", "ResNet", "Silero"]]
    m = per_query_metrics(ranked, relevant)
    assert list(m["recall@1"]) == [1.0, 0.0] and m["mrr"][1] == pytest.approx(1 / 3)


def test_cli_train_from_documents_alone_then_eval_json(api_file, tmp_path, capsys):
    from toolformer.cli import main
    base = tiny_sentence_model(tmp_path)
    out = tmp_path / "ret"
    assert main(["retriever", "train", "--tools", str(api_file), "--synthesize", "12", "--writer", "templates",
                 "--out", str(out), "--encoder", str(base), "--epochs", "1", "--batch-size", "4", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    synthesis = figures["synthesis"]
    assert synthesis["synthetic"] == 12 and synthesis["writer"] == "templates"
    assert figures["pairs"] == synthesis["pairs"] == (12 - synthesis["ambiguous"] - synthesis["repeats"]
                                                      - synthesis["removed_by_round_trip"])
    records = [json.loads(line) for line in (out / SYNTHETIC_FILE).read_text().splitlines()]
    assert len(records) == 12 and {r["tool"] for r in records} == {a["api_call"] for a in APIS}
    saved = json.loads((out / "retriever.json").read_text())
    assert saved["instruction"].startswith("Given a user request") and saved["training"]["synthesis"]["synthetic"] == 12
    code = "###Instruction: {}\n###Output: ..."
    queries = write_lines(tmp_path / "q.json", [
        json.dumps({"code": code.format("Transcribe this audio recording"), "api_call": "hub.load('silero')"}),
        json.dumps({"code": code.format("Which objects are in this picture?"), "api_call": "hub.load('yolo')"}),
        json.dumps({"code": code.format("Wide residual network for image classification"),
                    "api_call": "hub.load('resnet-wide')"}),
        # BM25 ranks its twin hub.load('resnet') first: a miss by api_call, a hit by api_name (ResNet)
        json.dumps({"code": code.format("deep residual network trained on ImageNet"),
                    "api_call": "hub.load('resnet-wide')"}),
        json.dumps({"code": code.format("Translate to French"), "api_call": "hub.load('marian')"})])
    assert main(["retriever", "eval", "--retriever", str(out), "--tools", str(api_file), "--queries", str(queries),
                 "--hybrid", "--bootstrap", "50", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "1 queries left out: their gold tool is not in the tool set" in lines[0]
    figures = json.loads(lines[-1])
    assert figures["queries"] == 4 and figures["gold_not_in_tools"] == 1
    assert set(figures["results"]) == {str(out), "hybrid", "bm25"} and figures["headline"] == "hybrid"
    assert figures["recall_at_1"] == figures["results"]["hybrid"]["recall@1"]
    assert figures["api_name_recall_at_1"] == figures["results"]["hybrid"]["by_api_name"]["recall@1"]
    assert {"recall_at_5", "ndcg_at_10", "ci", "vs_bm25"} <= set(figures)
    bm25 = figures["results"]["bm25"]
    assert bm25["recall@1"] == 0.75 and bm25["by_api_name"]["recall@1"] == 1.0
    assert bm25["ci"]["recall@1"][0] <= 0.75 <= bm25["ci"]["recall@1"][1]
    test = figures["results"]["hybrid"]["vs_bm25"]["mcnemar_recall@1"]
    assert test["difference"] == round(figures["results"]["hybrid"]["recall@1"] - 0.75, 4)
    stats = QueryStats()
    read_queries(queries, read_tool_set(api_file)[0], stats=stats)
    assert stats.gold_not_in_tools == 1


def test_cli_train_synthesize_needs_a_tool_file(tmp_path, capsys):
    from toolformer.cli import main
    assert main(["retriever", "train", "--synthesize", "4", "--out", str(tmp_path / "x")]) == 2
    assert "--synthesize writes queries from the documents of --tools FILE" in capsys.readouterr().err
