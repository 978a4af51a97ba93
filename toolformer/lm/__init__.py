"""The model layer: the backend interface (backend.py), its transformers implementation (hf.py),
model and tokenizer loading (loading.py) and the token rules every stage shares (tokens.py)."""
from toolformer.lm import hf  # noqa: F401 - registers the "hf" backend
