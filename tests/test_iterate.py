"""`toolformer iterate`: a seed round from annotations, then a round sampled by the seed's adapter."""
import json
import shutil

import pytest
from datasets import load_from_disk

from toolformer.cli import main
from toolformer.errors import UserValueError
from toolformer.run.manifest import Run

SEED = [("Natalia sold 48 clips in April and half as many in May. How many in May?",
         "In May she sold 48/2 = <<48/2=24>>24 clips.\n#### 24"),
        ("Weng earns 12 dollars an hour and worked 5 hours. How much did she earn?",
         "She earned 12*5 = <<12*5=60>>60 dollars.\n#### 60"),
        ("Betty has 15 dollars and her parents give her 30 more. How much does she have?",
         "She has 15+30 = <<15+30=45>>45 dollars.\n#### 45"),
        ("A shop had 90 pens and sold 35. How many are left?",
         "It has 90-35 = <<90-35=55>>55 pens left.\n#### 55")]
PLAIN = [f"Shop {i} sold {10 + i} pens and {20 + 2 * i} pencils, {30 + 3 * i} items in total; "
         f"each cost {i + 2} dollars, so they made {(30 + 3 * i) * (i + 2)} dollars." for i in range(3)]


@pytest.fixture(scope="module")
def iterated(tmp_path_factory, favouring_model_dir):
    root = tmp_path_factory.mktemp("iterate")
    seed, plain = root / "seed.jsonl", root / "plain.jsonl"
    seed.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in SEED))
    plain.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(PLAIN)))
    argv = ["iterate", "--run", "it", "--runs-dir", str(root / "runs"), "--model", str(favouring_model_dir),
            "--seed-corpus", str(seed), "--seed-format", "gsm8k", "--corpus", str(plain), "--rounds", "1",
            "--tau-s", "0", "--k", "3", "--m", "8", "--max-new-tokens", "8", "--tau-f", "-10",
            "--max-steps", "2", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    return root / "runs" / "it", argv


def files(folder):
    """Every file under `folder` with its modification time and size (lock files hold the last
    holder's PID, so each run rewrites them)."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")
            if p.is_file() and p.suffix != ".lock"}


def test_rounds_live_in_one_folder(iterated):
    path, _ = iterated
    state = json.loads((path / "iterate.json").read_text())
    assert [r["status"] for r in state["rounds"]] == ["done", "done"]
    for r in (0, 1):
        assert (path / f"round-{r}" / "manifest.json").exists()
        assert (path / f"round-{r}" / "augmented" / "dataset_dict.json").exists()
        assert (path / f"round-{r}" / "model" / "adapter" / "adapter_config.json").exists()
    seed, first = state["rounds"]
    # every seed annotation executes, and with τ_f = -10 the filter keeps each one
    assert (seed["candidates"], seed["kept_calls"]) == (4, 4)
    assert seed["sampler"] == "gsm8k annotations" and first["sampler"] == str(path / "round-0/model/adapter")
    assert first["kept_calls"] > 0


def test_round_1_samples_with_round_0s_adapter_and_no_prompt(iterated):
    path, _ = iterated
    sample = Run("round-1", path).stage("sample", "calculator").settings
    adapter = str(path / "round-0" / "model" / "adapter")
    assert (sample["adapter"], sample["no_prompt"], sample["prompt"]) == (adapter, True, None)
    assert Run("round-0", path).stage("sample", "calculator").settings["source"] == "annotations"


def test_round_1_trains_on_seed_and_its_own_documents(iterated):
    path, _ = iterated
    seed, own = (load_from_disk(str(path / f"round-{r}" / "augmented")) for r in (0, 1))
    training = load_from_disk(str(path / "round-1" / "training"))
    for split in ("train", "validation"):
        assert list(training[split]["text"]) == list(seed[split]["text"]) + list(own[split]["text"])
    ids = list(training["train"]["id"]) + list(training["validation"]["id"])
    assert sorted(i for i in ids if i.startswith("seed:")) == [f"seed:{n}" for n in range(1, len(SEED) + 1)]
    assert {i for i in ids if not i.startswith("seed:")} <= {f"p{i}" for i in range(len(PLAIN))}
    assert len(own["train"]) > 0 and "[Calculator(" in own["train"][0]["text"]  # round 1's kept calls
    finetuned = json.loads((path / "round-1" / "model" / "finetune.json").read_text())
    assert finetuned["train_documents"] == len(training["train"])
    assert finetuned["settings"]["data"] == str(path / "round-1" / "training")
    assert finetuned["settings"]["model"] == json.loads(
        (path / "round-0" / "model" / "finetune.json").read_text())["settings"]["model"]


def test_a_rerun_does_nothing_new_and_other_settings_are_refused(iterated, capsys):
    path, argv = iterated
    before = files(path)
    assert main(argv) == 0
    assert files(path) == before
    changed = argv[:argv.index("--tau-f") + 1] + ["-5"] + argv[argv.index("--tau-f") + 2:]
    assert main(changed) == 2
    assert "filter.tau_f: '-10' -> '-5'" in capsys.readouterr().err
    assert files(path) == before


def test_iterate_refuses_what_it_sets_itself(tmp_path):
    from toolformer.config import IterateSettings, RunSettings, SampleSettings
    from toolformer.training.iterate import iterate
    seed = IterateSettings(seed_corpus="s.jsonl", seed_format="gsm8k")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    with pytest.raises(UserValueError, match="adapter"):
        iterate(RunSettings(run="x", runs_dir=str(tmp_path), corpus=str(corpus)), seed, SampleSettings(adapter="a"))
    with pytest.raises(UserValueError, match="--corpus is needed: the unlabelled documents that rounds 1 to 1"):
        iterate(RunSettings(run="x", runs_dir=str(tmp_path)), seed)
    # a corpus that is not there is found before the seed round, not after it
    with pytest.raises(FileNotFoundError, match="--corpus .*nothing.jsonl does not exist"):
        iterate(RunSettings(run="x", runs_dir=str(tmp_path), corpus=str(tmp_path / "nothing.jsonl")), seed)
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_a_seed_round_with_no_documents_or_no_kept_call_is_one_clear_error(tmp_path, tiny_model_dir, capsys):
    seed = tmp_path / "seed.jsonl"
    seed.write_text("")
    argv = ["iterate", "--runs-dir", str(tmp_path / "runs"), "--model", str(tiny_model_dir), "--seed-corpus",
            str(seed), "--seed-format", "gsm8k", "--rounds", "0", "--max-steps", "1", "--no-progress"]
    assert main(argv[:1] + ["--run", "empty"] + argv[1:]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: no documents in {seed}"]
    seed.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in SEED[:2]))
    assert main(argv[:1] + ["--run", "unkept", "--tau-f", "1000"] + argv[1:]) == 2
    built = tmp_path / "runs" / "unkept" / "round-0" / "augmented"
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {built} holds no train documents: no document of its run has a kept call (see `toolformer report`)"]


def test_a_round_killed_before_its_adapter_was_saved_continues_from_its_checkpoint(iterated):
    path, argv = iterated
    state = json.loads((path / "iterate.json").read_text())
    state["rounds"][1]["status"] = "curated"  # what iterate.json says when a kill stops the finetune
    (path / "iterate.json").write_text(json.dumps(state))
    shutil.rmtree(path / "round-1" / "model" / "adapter")
    (path / "round-1" / "model" / "finetune.json").unlink()
    seed_round = files(path / "round-0")
    assert main(argv) == 0
    assert files(path / "round-0") == seed_round
    finetuned = json.loads((path / "round-1" / "model" / "finetune.json").read_text())
    assert (finetuned["resumed_from"], finetuned["steps"]) == ("checkpoint-2", 2)
    assert (path / "round-1" / "model" / "adapter" / "adapter_config.json").exists()
    assert json.loads((path / "iterate.json").read_text())["rounds"][1]["status"] == "done"
