"""The Python API mirrors the CLI: the same settings give the same files."""
import json

import pytest

import toolformer
from toolformer.cli import main

DOCS = [f"Shop {i} sold {10 + i} pens and {20 + 2 * i} pencils, {30 + 3 * i} items in total; "
        f"each cost {i + 2} dollars, so they made {(30 + 3 * i) * (i + 2)} dollars." for i in range(3)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, favouring_model_dir):
    root = tmp_path_factory.mktemp("api")
    model_dir = favouring_model_dir
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    return root, model_dir, corpus


def test_curate_and_build_from_python_equal_the_cli(setup):
    root, model_dir, corpus = setup
    runs = str(root / "runs")
    assert main(["curate", "--corpus", str(corpus), "--run", "cli", "--runs-dir", runs, "--model", str(model_dir),
                 "--tools", "calculator", "--k", "3", "--m", "2", "--max-new-tokens", "12", "--tau-f", "-10", "--no-progress"]) == 0
    figures = toolformer.curate("api", corpus=str(corpus), runs_dir=runs, model=str(model_dir), tools="calculator",
                                k="3", m="2", max_new_tokens=12, tau_f="-10", no_progress=True)
    assert figures["stages"]["sample/calculator"]["candidates"] > 0
    for name in ("candidates.jsonl", "executed.jsonl", "scored.jsonl"):
        cli, api = (root / "runs" / r / "calculator" / name for r in ("cli", "api"))
        # latency is the only field that differs between two executions
        strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "latency_ms"}
                              for line in path.read_text().splitlines()]
        assert strip(cli) == strip(api) and strip(api)
    assert main(["build", "--run", "cli", "--runs-dir", runs, "--heldout", "0", "--keep-uncalled-rate", "1"]) == 0
    built = toolformer.build("api", runs_dir=runs, heldout=0.0, keep_uncalled_rate=1.0)
    assert built["train"] == len(DOCS)
    cli_built = json.loads((root / "runs" / "cli" / "augmented" / "build.json").read_text())
    assert {k: v for k, v in built.items() if k not in ("run", "out")} == \
        {k: v for k, v in cli_built.items() if k not in ("run", "out")}


def test_an_unknown_setting_is_named(setup):
    with pytest.raises(TypeError, match="tau_x"):
        toolformer.curate("x", tau_x=1)


def test_api_functions_are_not_shadowed_by_modules():
    # `import toolformer.x` sets the attribute toolformer.x to the module: no API name may be one
    import importlib
    import pkgutil
    for module in pkgutil.walk_packages(toolformer.__path__, "toolformer."):
        if module.name.count(".") == 1:
            importlib.import_module(module.name)
    for name in ("curate", "build", "finetune", "evaluate", "generate", "iterate"):
        assert callable(getattr(toolformer, name)) and getattr(toolformer, name).__module__ == "toolformer", name
