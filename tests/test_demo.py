"""The demo's data: ASDiv -> SVAMP from a data folder, else the shipped GSM8K slices (no model loaded)."""
import json

from toolformer.corpus.annotations import AnnotationStats, read_annotated
from toolformer.demo import PACKAGE_DATA, demo_data


def test_a_data_folder_with_asdiv_and_svamp_trains_on_asdiv_and_tests_on_svamp(tmp_path):
    (tmp_path / "math").mkdir()
    for name in ("asdiv.jsonl", "svamp.jsonl"):
        (tmp_path / "math" / name).write_text("")
    data = demo_data(str(tmp_path))
    assert (data.corpus, data.format) == (tmp_path / "math" / "asdiv.jsonl", "asdiv")
    assert data.benchmark == ["--benchmark", "svamp", "--data-dir", str(tmp_path)]


def test_without_svamp_or_a_folder_the_shipped_gsm8k_slices_are_used(tmp_path):
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "asdiv.jsonl").write_text("")
    for data in (demo_data(str(tmp_path)), demo_data(None)):
        assert (data.corpus, data.format) == (PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k")
        assert data.benchmark == ["--benchmark", "gsm8k", "--data-file",
                                  str(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")]


def test_the_shipped_slices_are_annotated_gsm8k_and_share_no_problem():
    stats = AnnotationStats()
    train = list(read_annotated(PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k", skip_bad=True, stats=stats))
    assert len(train) + sum(stats.skipped.values()) == 400
    assert len(train) >= 395 and stats.annotations >= 2 * len(train)
    questions = {json.loads(line)["question"] for line in open(PACKAGE_DATA / "gsm8k_train_slice.jsonl")}
    held_out = [json.loads(line)["question"] for line in open(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")]
    assert len(held_out) == 200 and not questions & set(held_out)
    assert (PACKAGE_DATA / "GSM8K_LICENSE.md").read_text().count("MIT License") == 2
