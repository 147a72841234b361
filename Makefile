# Set-up is two commands on a fresh machine: `make bench` and `make test`.
# Both create .venv, install what is needed and build the extension first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
ARGS ?=

# torch: keep one that is already installed in the venv (GPU machines bring
# their own torch + triton); otherwise the CPU wheel pinned for these machines.
TORCH_SPEC ?= torch==2.13.0
TRITON_SPEC ?= triton==3.9.0
TIMM_SPEC ?= timm==1.0.31

.PHONY: setup build test bench lint clean

$(VENV)/.deps: pyproject.toml Makefile
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	@$(VPY) -c "import triton" 2>/dev/null || $(PIP) install -q "$(TRITON_SPEC)"
	$(PIP) install -q numpy pytest hypothesis scipy ruff==0.17.5 ninja tqdm matplotlib setuptools wheel
	$(PIP) install -q --no-deps "$(TIMM_SPEC)"
	# kornia: a benchmark peer only (RandomMixUpV2 / RandomCutMixV2); optional.
	-$(PIP) install -q --no-deps kornia==0.9.0 kornia_rs==0.2.0
	@touch $@

setup: $(VENV)/.deps

# The extension is rebuilt only when its sources (or the installed deps) change.
BUILT := $(VENV)/.built
$(BUILT): $(VENV)/.deps setup.py $(wildcard csrc/*.cpp csrc/*.h)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@touch $@

build: $(BUILT)
	@ls mixup_fused/_C*.so >/dev/null 2>&1 || { rm -f $(BUILT); $(MAKE) --no-print-directory $(BUILT); }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: build lint
	$(VPY) -m pytest -q $(ARGS)

bench: build
	$(VPY) -m bench $(ARGS)

clean:
	rm -rf build *.egg-info mixup_fused/_C*.so $(BUILT)
