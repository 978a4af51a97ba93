"""The model layer: the backend interface (backend.py), its transformers (hf.py) and vLLM (vllm.py)
implementations, model and tokenizer loading (loading.py) and the token rules every stage shares
(tokens.py). vllm.py imports vLLM only when its backend is built."""
from toolformer.lm import hf, vllm  # noqa: F401 - registers the "hf" and "vllm" backends
