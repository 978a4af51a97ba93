"""One settings dataclass per stage: the single place where each default is written.

The CLI generates its flags from these classes (toolformer/cli/flags.py), the Python API takes
them as keyword arguments, and the curation stages record them in the run's manifest.
Fields with `opt(..., cli=False)` are set by code, never by a flag.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from toolformer.assets import DEFAULT_LM


def opt(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
        choices: tuple | None = None, metavar: str | None = None, positional: bool = False,
        cli: bool = True, factory=None, repeat: bool = False, const: Any = None,
        low: float | None = None, high: float | None = None, above: float | None = None) -> Any:
    """A settings field with its help text and flag metadata, which toolformer/cli/flags.py reads
    (declared here so that the settings import nothing from the CLI). cli=False: set by code, never a flag.
    A number's bounds: low ≤ value ≤ high, value > above; the flag refuses anything else."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar,
            "positional": positional, "cli": cli, "repeat": repeat, "const": const,
            "low": low, "high": high, "above": above}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- run (shared by the curation stages)

from dataclasses import replace  # noqa: E402  (each section imports what it needs)

from toolformer.errors import UserValueError  # noqa: E402

# the names registered in lm.backend.BACKENDS (tests/test_vllm_backend.py checks they agree; the
# registry itself imports torch, which settings must not)
BACKEND_NAMES = ("hf", "vllm")
BACKEND_HELP = "LM backend: hf (transformers) or vllm (vLLM engines, installed by `make setup-vllm`)"


@dataclass(frozen=True)
class RunSettings:
    """Which run, which documents and which model: shared by sample, execute, filter and curate."""
    run: str = opt(help="run name: outputs go to RUNS_DIR/NAME/")
    runs_dir: str = opt("runs", "folder holding runs")
    corpus: str | None = opt(None, "documents: .jsonl, .jsonl.gz, .parquet, .txt (blank-line separated) or a "
                                   "saved dataset; needed by the first stage of a run only")
    limit: int | None = opt(None, "use only the first N documents", low=1)
    skip_bad: bool = opt(False, "skip malformed lines (counted and reported)")
    model: str = opt(DEFAULT_LM, "hub id, local folder, .gguf file or embedded alias")
    backend: str = opt("hf", BACKEND_HELP, choices=BACKEND_NAMES)
    dtype: str | None = opt(None, "weights and matmuls of the model stages: float32, or bfloat16 (faster on a CPU "
                                  "with AVX512-BF16/AMX, but losses move by up to ~0.1 and a sample may then depend "
                                  "on its batch); default: the device's (CPU float32, GPU bfloat16)",
                            choices=("float32", "bfloat16"))
    syntax: str | None = opt(None, "call syntax: toolformer or hw3 (default: the run's own, else toolformer)")
    seed: int = opt(0, "seed of the sampled calls")
    chunk_docs: int = opt(8, "documents per committed chunk: a killed stage redoes at most one chunk", low=1)
    no_progress: bool = opt(False, "no progress bars")
    # not recorded with a stage: its output is the same with or without Ray, so a run may switch
    ray: str | None = opt(None, "run the model stages on Ray workers: local (a cluster on this machine; "
                                "also a bare --ray), auto (the cluster this node is in) or a cluster address",
                          metavar="ADDRESS", const="local")
    workers: int | None = opt(None, "Ray workers, each holding one model (default: one per GPU of the cluster, "
                                    "else one per 4 CPUs)", low=1)


def per_tool(value, cast, tool_key: str, default, flag: str, low: float = float("-inf"), high: float = float("inf")):
    """A setting given for every tool (0.5), per tool ("calculator=0.5,qa=1.0", or a dict), or not
    at all (None): its value for one tool; tools it does not name keep `default`. A value that is
    not a `cast`, or outside [low, high], is refused naming `flag`."""
    resolved = _per_tool(value, cast, tool_key, default, flag)
    if not low <= resolved <= high:
        raise UserValueError(f"{flag} for {tool_key}: {resolved} is outside [{low:g}, {high:g}]")
    return resolved


def _per_tool(value, cast, tool_key: str, default, flag: str):
    if value is None:
        return default
    if isinstance(value, dict):
        return cast(value[tool_key]) if tool_key in value else default
    try:
        if not isinstance(value, str) or "=" not in value:
            return cast(value)
        for part in value.split(","):
            name, _, v = part.partition("=")
            if name.strip().lower() == tool_key:
                return cast(v)
    except ValueError:
        raise UserValueError(f"{flag} {value!r}: expected a {cast.__name__}, or tool={cast.__name__},...") from None
    return default


# ---- sample

@dataclass(frozen=True)
class SampleSettings:
    """`toolformer sample`: propose calls at the positions where the model expects one.
    tau_s, k and m may be given per tool ("calculator=5,qa=2"); unset, each tool's own applies."""
    window: int = opt(512, "tokens of document per window", low=1)
    tau_s: str | float | None = opt(None, "sampling threshold; a number, or tool=value,... per tool")
    k: str | int | None = opt(None, "positions kept per window; a number or tool=value,...")
    m: str | int | None = opt(None, "calls sampled per position; a number or tool=value,...")
    max_new_tokens: int = opt(32, "length cap of a sampled call", low=1)
    temperature: float = opt(1.0, "sampling temperature", cli=False, above=0)
    min_context: int = opt(0, "propose no call before the N-th token of a window (default 0: every position, "
                              "as in the paper; at the very start L(ε) has no context, so any call looks useful)", low=0)
    windows_per_pass: int = opt(8, "windows whose KV caches are held at once", cli=False)
    tool_retriever: str | None = opt(None, "prompt each document only with the tools this retriever ranks "
                                           "highest: a folder from `toolformer retriever train`, "
                                           "all-minilm-l6-v2 or bm25")
    tools_per_doc: int | None = opt(2, "tools per document with --tool-retriever", low=1)
    adapter: str | None = opt(None, "sample with a finetuned model: a LoRA folder written by `toolformer finetune` "
                                    "(its base model is recorded there); filtering still uses --model")
    no_prompt: bool = opt(False, "read p(<API>) on the text alone, without the tool's few-shot prompt "
                                 "(for a sampler finetuned to write calls)")
    from_annotations: str | None = opt(None, "take the candidates from calls already written in --corpus instead "
                                             "of sampling them: its format (gsm8k, hw3, toolformer, asdiv, mawps), or "
                                             "facts: Calendar, WikiSearch and QA calls before the dates and facts "
                                             "a plain corpus states",
                                       metavar="FORMAT")
    annotation_split: str = opt("train", "with --from-annotations on data that is also a benchmark with a split "
                                         "(asdiv): read its train part only, or all of it", choices=("train", "all"))

    def for_tool(self, tool) -> "SampleSettings":
        """These settings with every per-tool value resolved for `tool`: what its stage records."""
        return replace(self, tau_s=per_tool(self.tau_s, float, tool.key, tool.tau_s, "--tau-s", 0, 1),
                       k=per_tool(self.k, int, tool.key, tool.k, "--k", 1),
                       m=per_tool(self.m, int, tool.key, tool.m, "--m", 1),
                       tools_per_doc=self.tools_per_doc if self.tool_retriever else None)


# ---- execute

WIKI_CORPUS_HELP = ("Wikipedia dump WikiSearch and QA read (.jsonl, .jsonl.gz or .parquet of title/text; "
                    "indexed once, streamed, cached): default the embedded 10,033 leads")


@dataclass(frozen=True)
class ExecuteSettings:
    """`toolformer execute`: run each distinct call once."""
    options: dict | None = opt(None, "executor options on top of the tool's own", cli=False)
    wiki_corpus: str | None = opt(None, WIKI_CORPUS_HELP, metavar="DUMP")


# ---- filter

@dataclass(frozen=True)
class FilterSettings:
    """`toolformer filter`: keep the calls whose result lowers the loss of what follows by τ_f."""
    window: int | None = opt(None, "tokens per window: always the sampler's; another value is refused", low=1)
    tau_f: str | float | None = opt(None, "filtering threshold on L- minus L+; a number or tool=value,...")
    lazy: bool = opt(False, "compute only the losses that can change the decision: L+ where L(ε) ≥ τ_f, "
                            "L(e(c,ε)) where L(ε) − L+ ≥ τ_f. The same kept calls for about half the work; "
                            "the other filtered calls then have no usefulness (the report leaves them out)")

    def for_tool(self, tool) -> "FilterSettings":
        return replace(self, tau_f=per_tool(self.tau_f, float, tool.key, tool.tau_f, "--tau-f"))


# ---- iterate

@dataclass(frozen=True)
class IterateSettings:
    """`toolformer iterate`: round 0 curates annotated seed data and finetunes on it; round r samples
    the unlabelled --corpus with round r-1's model (no prompt), curates, and finetunes a fresh
    adapter from the base model on seed + round-r data. Recorded in RUNS_DIR/NAME/iterate.json."""
    seed_corpus: str = opt(help="annotated seed documents, read with --seed-format (round 0)")
    seed_format: str = opt(help="format of the seed's calls: gsm8k, hw3, toolformer, asdiv or mawps")
    seed_limit: int | None = opt(None, "use only the first N seed documents", low=1)
    seed_filter: str = opt("tau_f", "seed annotations to keep: those whose usefulness reaches τ_f (the paper "
                                    "filters every call), or all that execute", choices=("tau_f", "all"))
    rounds: int = opt(1, "sampling rounds after the seed round (a re-run with more adds rounds)", low=0)
    tools: str = opt("calculator", "comma-separated tools curated in every round")
    filter_with: str = opt("base", "model scoring the sampled calls: base (M, the call as a prefix: the paper) "
                                   "or sampler (the previous round's model)", choices=("base", "sampler"))
    eval: str | None = opt(None, "evaluate each round's model on this benchmark, tools off and on",
                           metavar="BENCHMARK")
    eval_limit: int | None = opt(None, "evaluation examples per round (a seeded subset)", low=1)
    data_dir: str | None = opt(None, "benchmark data folder (default: $TOOLFORMER_DATA)")


# ---- build

@dataclass(frozen=True)
class BuildSettings:
    """`toolformer build`: merge a run's kept calls into an augmented corpus (recorded in build.json)."""
    syntax: str | None = opt(None, "call syntax of the output: toolformer or hw3 (Calculator calls only); "
                                   "default: the run's own")
    max_per_tool: int = opt(25000, "most calls kept per tool, the most useful first (as in the paper)", low=0)
    keep_uncalled_rate: float = opt(0.0, "share of documents without a kept call to keep as plain text "
                                         "(default 0, the paper)", low=0, high=1)
    heldout: float = opt(0.1, "share of documents in the validation split", low=0, high=0.9)
    seed: int = opt(0, "seed of the keep-uncalled draw and of the split")
    skip_bad: bool = opt(False, "skip malformed scored records (counted)")
    no_calls: bool = opt(False, "write the control corpus instead: the same documents and split with every "
                                "call removed (the no-tool baseline), to <augmented folder>-no-calls/")
    min_usefulness: float | None = opt(None, "take every scored call with usefulness ≥ this instead of the ones "
                                             "the filter kept; --min-usefulness=-inf takes every call that "
                                             "executed (the filter's ablation), to <augmented folder>-unfiltered/")


# ---- finetune

@dataclass(frozen=True)
class FinetuneSettings:
    """`toolformer finetune`: causal-LM training on a run's augmented corpus (LoRA or full)."""
    model: str = opt(DEFAULT_LM, "base model: hub id, local folder, .gguf file or embedded alias")
    data: str | None = opt(None, "augmented corpus folder, or several separated by commas, trained on together "
                                 "(default: RUNS_DIR/NAME/augmented)")
    out_dir: str | None = opt(None, "output folder (default: RUNS_DIR/NAME/model)", flag="--out")
    full: bool = opt(False, "full finetuning instead of LoRA")
    lora_r: int = opt(8, "LoRA rank", low=1)
    lora_alpha: int = opt(16, "LoRA alpha", low=1)
    lora_dropout: float = opt(0.05, "LoRA dropout", low=0, high=0.9)
    target_modules: str = opt("all-linear", "comma-separated module names, or all-linear")
    lr: float | None = opt(None, "learning rate (default 2e-4 LoRA, 1e-5 full)", above=0)
    max_steps: int = opt(30, "optimizer steps", low=1)
    # 8 documents per optimizer step, 4 at a time: the same gradient, and a smaller heap (glibc keeps
    # what larger activations freed): 2.6 GB peak RSS instead of 4.1 GB on the demo's corpora
    batch_size: int = opt(4, "documents per device and forward pass", low=1)
    grad_accum: int = opt(2, "forward passes (micro-batches) per optimizer step", low=1)
    max_length: int = opt(256, "tokens per document (longer ones are cut)", low=2)
    eval_steps: int = opt(10, "evaluate and checkpoint every N steps", low=1)
    warmup_steps: int = opt(0, "linear warmup steps", low=0)
    mask_results: bool = opt(False, "no loss on tool result tokens")
    merge: bool = opt(False, "also save the base model with the adapter merged in")
    resume: bool = opt(False, "continue from the last complete checkpoint (else start over)")
    bf16: bool = opt(False, "bf16 autocast: a GPU, or a CPU with AVX512-BF16/AMX (1.3× faster measured on 135M LoRA)")
    gradient_checkpointing: bool = opt(True, "recompute activations in the backward pass instead of keeping "
                                             "them: less memory for some more compute")
    seed: int = opt(0, "seed of the LoRA init, the data order and dropout")
    progress: bool = opt(True, "show a progress bar")


# ---- generate

@dataclass(frozen=True)
class DecodingSettings:
    """What decodes and how calls start: shared by `generate` and `eval`."""
    model: str | None = opt(None, "hub id, local folder, .gguf file or embedded alias "
                                  "(default: the adapter's base model, else smollm2-135m-instruct)")
    adapter: str | None = opt(None, "LoRA adapter folder written by `toolformer finetune`")
    backend: str = opt("hf", BACKEND_HELP, choices=BACKEND_NAMES)
    syntax: str | None = opt(None, "call syntax (default: the adapter's, else toolformer)")
    top_k: int = opt(10, "start a call when the start marker is in the top k (1: greedy)", low=1)
    max_calls: int = opt(1, "calls per input at most", low=0)
    max_call_tokens: int = opt(48, "an open call (name and input) that reaches this many tokens without its "
                                   "arrow is closed there and run on what it holds (the demo's longest kept "
                                   "call has 33)", low=1)
    tool_retriever: str | None = opt(None, "offer each input only its top tools by this retriever "
                                           "(bm25, a model, or a `toolformer retriever train` folder)")
    tools_per_input: int = opt(1, "tools offered per input with --tool-retriever", low=1)
    wiki_corpus: str | None = opt(None, WIKI_CORPUS_HELP, metavar="DUMP")


@dataclass(frozen=True)
class GenerateSettings(DecodingSettings):
    """`toolformer generate`: greedy decoding with live tool calls."""
    tools: str = opt("on", "off: calls banned (the baseline)", choices=("on", "off"))
    allow_tools: str | None = opt(None, "comma-separated tools the model may call (default: all)")
    max_new_tokens: int = opt(64, "tokens generated per prompt at most", low=1)
    batch_size: int = opt(8, "prompts decoded together", low=1)


# ---- evaluate

@dataclass(frozen=True, kw_only=True)
class EvalSettings(DecodingSettings):
    """`toolformer eval`: one benchmark, zero-shot, with tools on and/or off."""
    benchmark: str = opt(help="benchmark name (listed below)")
    data_dir: str | None = opt(None, "folder with math/, lama/, qa/ files (default: $TOOLFORMER_DATA)")
    data_file: str | None = opt(None, "one JSONL file with the benchmark's rows (overrides --data-dir)")
    hub: str | None = opt(None, "dataset id[:config] for datasets.load_dataset (needs a connection)")
    hub_split: str | None = opt(None, "the hub dataset's split (default: the benchmark's usual one)")
    split: str | None = opt(None, "part of a benchmark that is also trained on: asdiv's seeded held-out test "
                                  "part or gsm8k's test file (the default), their train part, or all; test sets "
                                  "(svamp ...) are always evaluated whole. The hub's split is --hub-split",
                            choices=("test", "train", "all"))
    limit: int | None = opt(None, "a seeded subset of N examples; a larger N keeps those of a smaller one, "
                                  "so a re-run extends the evaluation (dateset: N generated)", low=1)
    tools: str = opt("both", "decode with tools on, off, or both (a paired comparison)", choices=("on", "off", "both"))
    in_reach_only: bool = opt(False, "only the examples in reach: a gold answer in the top WikiSearch passage of "
                                     "the question (knowledge benchmarks) or in what Calendar() says (dateset: of "
                                     "the N generated); --limit takes a seeded subset of those")
    allow_tools: str | None = opt(None, "comma-separated tools the model may call "
                                        "(default: all but those the paper withholds from the task)")
    batch_size: int = opt(16, "prompts decoded together", low=1)
    max_new_tokens: int | None = opt(None, "default: per benchmark (math 64, LAMA 32, QA 64, dateset 40)", low=1)
    out: str | None = opt(None, "output folder (default: runs/eval/<model or adapter>); a re-run with the "
                                "same settings continues there")
    table: str | None = opt(None, "append a row to this markdown results table")
    seed: int = opt(0, "subset and dateset seed")
    progress: bool = opt(True, "show progress bars")


@dataclass(frozen=True)
class CompareSettings:
    """`toolformer compare`: two evaluation record files, paired on the same examples."""
    first: str = opt(help="records of the baseline, e.g. runs/eval/base/svamp.tools-on.jsonl", positional=True)
    second: str = opt(help="records to compare with it, on the same examples", positional=True)
    table: str | None = opt(None, "append a row to this markdown table")


# ---- retrieval

from toolformer.assets import DEFAULT_EMBEDDER  # noqa: E402  (each section imports what it needs)

# shared by these settings and toolformer/retrieval/, which imports them from here
WINDOW_CHARS = 400        # text before a kept call that forms its query
DEFAULT_MAX_LENGTH = 128  # tokens per text
POOLINGS = ("last", "mean")
RETRIEVER_HELP = "bm25, a model, or a trained retriever folder"


@dataclass(frozen=True, kw_only=True)
class RetrieverToolSet:
    """The tools a retriever ranks."""
    tools: str | None = opt(None, "tool set JSONL (name or api_call, description); default: the registered tools")


@dataclass(frozen=True, kw_only=True)
class RetrieverData(RetrieverToolSet):
    """Where `retriever train` and `retriever eval` take their queries from."""
    queries: str | None = opt(None, "JSONL {query, tool} or APIBench records {code, api_call}")
    run: list[str] | None = opt(None, "a curated run: its kept calls become (text before call -> tool); "
                                      "repeatable", repeat=True)
    min_usefulness: float | None = opt(None, "with --run: take every scored call with usefulness ≥ this "
                                             "instead of the kept ones")
    runs_dir: str = opt("runs", "folder holding runs")
    window_chars: int = opt(WINDOW_CHARS, "characters before a call", low=1)
    holdout: float = opt(0.0, "share of documents/queries held out by a fixed hash split; "
                              "train uses the rest, eval the held-out part", low=0, high=0.9)
    limit: int | None = opt(None, "use a random sample of N (seeded)", low=1)
    seed: int = opt(0, "seed of --limit's sample and of training")
    skip_bad: bool = opt(False, "skip bad query lines (counted and reported)")


@dataclass(frozen=True, kw_only=True)
class RetrieverTraining:
    """InfoNCE optimisation (retrieval/train.py)."""
    epochs: int = opt(2, "passes over the training pairs", low=1)
    batch_size: int = opt(32, "queries per batch (their positives are each other's negatives)", low=1)
    grad_accum: int = opt(1, "batches per optimiser step", low=1)
    lr: float | None = opt(None, "learning rate; default 2e-5, or 1e-4 with --lora", above=0)
    temperature: float = opt(0.02, "InfoNCE temperature (E5: 0.02)", above=0)
    hard_negatives: int = opt(3, "mined per query each epoch", low=0)


@dataclass(frozen=True, kw_only=True)
class RetrieverTrainSettings(RetrieverTraining, RetrieverData):
    """`toolformer retriever train`."""
    pairs: str | None = opt(None, "JSONL {query, positive, negatives} of texts")
    out: str = opt(help="folder to write the trained retriever to")
    encoder: str = opt(DEFAULT_EMBEDDER, "start from: a sentence-transformers model, a causal LM "
                                         "(e.g. smollm2-135m-instruct) or a retriever folder")
    pooling: str | None = opt(None, "LLM embedder pooling (default last)", choices=POOLINGS)
    instruction: str | None = opt(None, "query instruction (E5); '' for none. Default: none for "
                                        "sentence-transformers, a generic one for an LLM")
    lora: int = opt(0, "LoRA rank for an LLM embedder (0: train all weights)", low=0)
    lora_layers: int | None = opt(None, "train the adapters of the last N blocks only (cheaper)", low=1)
    max_length: int | None = opt(None, f"tokens per text (default {DEFAULT_MAX_LENGTH})", low=2)
    synthesize: int | None = opt(None, "train on N synthetic queries written from the --tools documents "
                                       "alone (no human queries), spread over the documents; "
                                       "written to OUT/synthetic.jsonl, resumable", metavar="N", low=1)
    writer: str = opt("templates", "who writes the synthetic queries: templates over the document fields, "
                                   "the instruct LM (slow on a CPU, and weak at 135M), or "
                                   "both (half each)", choices=("lm", "templates", "mixed"))
    writer_model: str = opt(DEFAULT_LM, "the instruct LM that writes synthetic queries")
    round_trip: int = opt(10, "keep a synthetic query only if BM25 ranks its document in the top K (0: keep all)",
                          metavar="K", low=0)


@dataclass(frozen=True, kw_only=True)
class RetrieverEvalSettings(RetrieverData):
    """`toolformer retriever eval`."""
    retriever: str = opt(DEFAULT_EMBEDDER, RETRIEVER_HELP)
    hybrid: bool = opt(False, "also rank by reciprocal rank fusion of the retriever with BM25")
    bootstrap: int = opt(1000, "bootstrap resamples of the queries for the 95% CIs and the paired test", low=1)


@dataclass(frozen=True, kw_only=True)
class RetrieverSearchSettings(RetrieverToolSet):
    """`toolformer retriever search`."""
    text: str = opt(help="the text to find tools for", positional=True)
    retriever: str = opt(DEFAULT_EMBEDDER, RETRIEVER_HELP)
    k: int = opt(10, "how many tools to print", flag="-k", low=1)


# ---- report

@dataclass(frozen=True, kw_only=True)
class ReportSettings:
    """`toolformer report`: runs/RUN/report.html (self-contained) and report.md."""
    run: str = opt(help="run name (a folder under --runs-dir)")
    runs_dir: str = opt("runs", "folder holding runs")
    compare: str | None = opt(None, "another run to put side by side (funnels, kept counts)", metavar="OTHER")
    max_examples: int = opt(3000, "example rows embedded in the page; counts and plots use all", low=1)
    seed: int | None = opt(None, "seed of the random example sample (default: the seed the run was sampled with)")
    screenshot: bool = opt(False, "also open the page in headless Chromium: load time, console errors, report.png")


@dataclass(frozen=True, kw_only=True)
class ShowSettings:
    """`toolformer show`: a run's calls of one tool as a table in the terminal."""
    run: str = opt(help="run name (a folder under --runs-dir)")
    runs_dir: str = opt("runs", "folder holding runs")
    tool: str = opt(help="tool key, e.g. calculator")
    # at most one of kept / filtered / failed (the CLI makes them exclusive flags)
    kept: bool = opt(False, "only kept calls")
    filtered: bool = opt(False, "only calls scored below τ_f")
    failed: bool = opt(False, "only calls whose execution failed")
    top: int = opt(20, "rows to print, best usefulness first")

    def __post_init__(self):
        if self.top < 1:
            raise UserValueError(f"--top must be at least 1, got {self.top}")
        if self.kept + self.filtered + self.failed > 1:
            raise UserValueError("choose at most one of kept, filtered and failed")

    @property
    def status(self) -> str | None:
        """The status of the calls shown; None: all of them."""
        return next((s for s in ("kept", "filtered", "failed") if getattr(self, s)), None)


# ---- tool

@dataclass(frozen=True, kw_only=True)
class ToolSettings:
    """`toolformer tool NAME "INPUT"`: one call, its result printed (exit 0) or its error (exit 1)."""
    name: str = opt(help="the tool (listed below; any case)", positional=True)
    input: str = opt(help='the call\'s input, e.g. "400 / 1400"', positional=True)
    date: str | None = opt(None, "the document's date for Calendar (ISO 8601, e.g. 2013-04-19)")
    timeout: float | None = opt(None, "seconds the call may take (default: the tool's own)", metavar="S")
    option: list[str] | None = opt(None, "an executor option, values read as JSON where they are, e.g. decimals=4, "
                                         "corpus=passages.jsonl, snippet_chars=300; repeat the flag for several",
                                   metavar="KEY=VALUE", repeat=True)

    def __post_init__(self):
        if self.timeout is not None and not self.timeout > 0:  # NaN too
            raise UserValueError(f"--timeout must be a positive number of seconds, got {self.timeout:g}")


# ---- demo

@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    """`toolformer demo`: annotated math problems and a facts slice -> a 135M model that calls the
    calculator, Calendar, WikiSearch and QA, against the same finetuning without calls. Defaults
    sized for 20 minutes on 2 CPU cores."""
    run: str = opt("demo", "demo folder: its runs (math, facts), models and evaluations go to RUNS_DIR/NAME/")
    runs_dir: str = opt("runs", "folder holding runs")
    data_dir: str | None = opt(None, "data folder with math/asdiv.jsonl and math/svamp.jsonl (default: "
                                     "$TOOLFORMER_DATA): train on ASDiv's train split, evaluate on SVAMP, and "
                                     "on NQ where it has qa/nq_test.jsonl. Without it: the GSM8K slices "
                                     "shipped in the package")
    model: str = opt(DEFAULT_LM, "base model: hub id, local folder, .gguf file or embedded alias")
    documents: int = opt(320, "annotated math documents curated", low=1)
    facts_documents: int = opt(400, "first documents of the shipped facts slice curated (speeches, leads "
                                    "and lead facts asked as questions, mixed)", low=0)
    steps: int = opt(50, "finetuning steps (each model)", low=1)
    batch_size: int = opt(FinetuneSettings.batch_size, "documents per finetuning forward pass", low=1)
    grad_accum: int = opt(FinetuneSettings.grad_accum, "forward passes per finetuning step (8 documents a step "
                                                       "by default)", low=1)
    lr: float = opt(2e-3, "learning rate of the LoRA finetune", above=0)
    # the answer, one or two tokens, is all that follows a call here: usefulness stays small
    tau_f: str = opt("calculator=0.25,calendar=0.5,wikisearch=0.5,qa=0.5",
                     "filtering thresholds, per tool: half the paper's (0.5 calculator, 1.0 the others)")
    limit: int = opt(60, "evaluation examples per benchmark", low=1)
    precision: str = opt("auto", "the curation's model in bfloat16 or float32 (--dtype); auto: bfloat16 where the "
                                 "CPU has AVX512-BF16 or AMX (the filter 2.4x faster there), else float32",
                         choices=("auto", "bfloat16", "float32"))
    progress: bool = opt(True, "a progress bar per long step (--no-progress: none)")
