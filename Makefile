# `make up` and `make test` both work from a fresh clone: they build .venv first when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sala-installed
TORCH_VERSION ?= 2.13.0
# PyTorch's own CPU wheels: a plain `pip install torch` from PyPI brings a multi-GB CUDA build.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install torch up test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(MAKE) --no-print-directory torch
	$(PY) -m pip install --quiet -e '.[dev,postgres,export]'
	touch $(STAMP)

# The pinned torch: PyPI's (CUDA) build where an NVIDIA driver is present; elsewhere the CPU build,
# `+cpu`, from wherever pip already finds it (a local wheel store), else from PyTorch's CPU index.
# PyPI has no `+cpu` release, so on other machines the first try fails at once.
torch:
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"; \
	else \
		$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
		|| $(PY) -m pip install --quiet --index-url "$(TORCH_CPU_INDEX)" "torch==$(TORCH_VERSION)"; \
	fi

install: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/sala up

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .sala .pytest_cache
