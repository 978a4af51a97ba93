"""Position scoring against a bare forward pass over the same token batches.

Ours: one pass per window over P(x) + x, the few-shot prompt every window shares encoded once
(the backend's shared-prefix cache), LM head (and log-softmax) only at the positions of x, the
start-marker probabilities read out. Bare: the model's own forward, logits everywhere.
Prints one JSON line: tokens/s of both and their ratio (target ≥ 0.8).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from bench.common import Timer, gsm8k_documents, parser  # noqa: E402
from toolformer.tools import get_tool  # noqa: E402
from toolformer.lm.hf import HFBackend, _length_batches  # noqa: E402
from toolformer.run.records import Document  # noqa: E402
from toolformer.config import SampleSettings  # noqa: E402
from toolformer.pipeline.sample import Sampler  # noqa: E402
from toolformer.pipeline.windows import document_windows  # noqa: E402
from toolformer.corpus.syntax import TOOLFORMER  # noqa: E402


def main() -> None:
    args = parser(__doc__).parse_args()
    lm = HFBackend.from_ref(args.model)
    sampler = Sampler(lm, get_tool("calculator"), TOOLFORMER, SampleSettings().for_tool(get_tool("calculator")))
    windows = [w for i, (text, _) in enumerate(gsm8k_documents(args.data, args.docs))
               for w in document_windows(lm, Document(str(i), text, {}), 512)]
    prompts = [sampler.prompt_ids(w) for w in windows]
    seqs = [p + w.ids for p, w in zip(prompts, windows)]
    tokens = sum(map(len, seqs))
    lm.next_token_logprobs(seqs[:1], [len(prompts[0])], sampler.markers)  # warm-up

    with torch.inference_mode(), Timer() as bare:
        for batch in _length_batches([len(s) for s in seqs], lm.max_batch_tokens):
            ids, mask = lm._padded([seqs[i] for i in batch])
            lm.model(input_ids=ids, attention_mask=mask).logits.sum().item()
    with Timer() as ours:
        lm.next_token_logprobs(seqs, [len(p) for p in prompts], sampler.markers)
    print(json.dumps({"bench": "positions", "windows": len(seqs), "tokens": tokens,
                      "bare_tokens_per_s": round(tokens / bare.seconds, 1),
                      "ours_tokens_per_s": round(tokens / ours.seconds, 1),
                      "ratio_ours_vs_bare": round(bare.seconds / ours.seconds, 3), "target": 0.8}))


if __name__ == "__main__":
    main()
