"""Finetuning a model on an augmented corpus, and iterated rounds of curation and finetuning."""
