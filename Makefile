# Set-up is two commands on a fresh machine: `make bench` and `make test`.
# Both create the virtual environments, install what is needed and build the
# extension first; a second call on an unchanged tree rebuilds nothing.
#
# Two torch versions are tested (the supported range in pyproject.toml):
#   .venv       torch 2.14.1 + torchvision 0.29.1, the full timm and kornia:
#               the real peers import there, so none of their tests skip, and
#               the benchmark compares against what users run.
#   .venv-2.13  torch 2.13.0 (the CPU wheel), timm installed without its deps
#               (no torchvision): the tests of the peers skip there.
# Each torch needs its own build of the extension, so the second one builds
# and tests a copy of the tree in build/torch-2.13.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
ARGS ?=

# torch: keep one that is already installed in the venv (GPU machines bring
# their own torch + triton); otherwise the versions pinned for these machines.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TRITON_SPEC ?= triton
TIMM_SPEC ?= timm==1.0.31
# full: timm and kornia with their dependencies (they need torchvision); light: timm without them.
PEERS ?= full

LIGHT_VENV := $(CURDIR)/.venv-2.13
LIGHT_TREE := build/torch-2.13
LIGHT_TORCH := torch==2.13.0
LIGHT_TRITON := triton==3.9.0
LIGHT_ARGS ?= -m "not slow or light_env"
HERE_ARGS ?=

.PHONY: setup build test test-here test-light test-asan bench gpu-check lint clean

$(VENV)/.deps: pyproject.toml Makefile
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC)
	@$(VPY) -c "import triton" 2>/dev/null || $(PIP) install -q "$(TRITON_SPEC)"
	$(PIP) install -q numpy pytest hypothesis scipy ruff==0.17.5 ninja tqdm matplotlib setuptools wheel
ifeq ($(PEERS),full)
	$(PIP) install -q "$(TIMM_SPEC)" kornia==0.9.0
else
	$(PIP) install -q --no-deps "$(TIMM_SPEC)"
	# kornia: a benchmark peer only (RandomMixUpV2 / RandomCutMixV2); optional.
	-$(PIP) install -q --no-deps kornia==0.9.0 kornia_rs==0.2.0
endif
	@touch $@

setup: $(VENV)/.deps

# The extension is rebuilt only when its sources (or the installed deps) change,
# and then only what changed (setup.py keeps its build folders under build/).
BUILT := $(VENV)/.built
$(BUILT): $(VENV)/.deps setup.py $(wildcard csrc/*.cpp csrc/*.h)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@touch $@

build: $(BUILT)
	@ls mixup_fused/_C*.so >/dev/null 2>&1 || { rm -f $(BUILT); $(MAKE) --no-print-directory $(BUILT); }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The suite in this tree's environment (--durations: its slowest tests, to see
# where the suite's time goes).
test-here: build
	$(VPY) -m pytest -q --durations=15 $(HERE_ARGS) $(ARGS)

# The suite on torch 2.13.0 without the peers, in a copy of the tree: the
# files git tracks or does not ignore, with their timestamps, so that the
# copy's build (its build/ and the .so, kept between calls) is incremental.
# The kernels' objects, which include no torch header, come from this tree's
# object cache (see setup.py): one compile serves both torch versions.
define copy_tree
	@mkdir -p $(1)/mixup_fused
	@find $(1) -mindepth 1 -maxdepth 1 ! -name build ! -name mixup_fused ! -name '*.egg-info' -exec rm -rf {} +
	@find $(1)/mixup_fused -mindepth 1 -maxdepth 1 ! -name '_C*.so' -exec rm -rf {} +
	@git ls-files -z --cached --others --exclude-standard | xargs -0 tar cf - --ignore-failed-read 2>/dev/null \
		| tar xf - -C $(1)
endef

test-light:
	$(call copy_tree,$(LIGHT_TREE))
	MIXUP_FUSED_OBJECT_CACHE=$(CURDIR)/build/kernel-objects \
		$(MAKE) --no-print-directory -C $(LIGHT_TREE) test-here VENV=$(LIGHT_VENV) TORCH_SPEC="$(LIGHT_TORCH)" \
		TRITON_SPEC="$(LIGHT_TRITON)" PEERS=light HERE_ARGS= ARGS='$(LIGHT_ARGS) $(ARGS)'

# The two environments run side by side (each output is printed whole): on two
# cores that takes well under the sum of the two. The tests marked slow (tensors
# past 2**31 elements, the benchmark's quick run) run in the main environment
# only, so that two of them never hold their memory at once; the mutation run
# (slow, but small) is marked light_env and runs in the torch 2.13 one instead,
# which balances the two. The Triton kernel's checks are split the same way:
# the interpreter cases (the Triton backend on CPU tensors) run in the main
# environment, the ahead-of-time compiles for sm_80 / sm_90 (tests marked
# triton_aot) in the torch 2.13 one, each Triton version checking one of
# the two (running both in both took a third of each leg).
# Each leg runs torch on one thread (OMP_NUM_THREADS=1): two legs of two
# spinning OpenMP threads each on two cores took twice as long. The tests of
# threaded kernels set their thread counts themselves.
test: lint
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target test-here test-light \
		HERE_ARGS='-m "not light_env and not triton_aot"' \
		LIGHT_ARGS='-m "(not slow or light_env) and not triton_interpreter"'

# The C++ kernels under AddressSanitizer and UndefinedBehaviorSanitizer: a
# copy of the tree in build/asan (as for test-light; its build/ is kept, so a
# second call rebuilds nothing), built with MIXUP_FUSED_SANITIZE=1, and the
# tests of the C++ backend (fuzz and past-2**31 tests included) run with the
# sanitizer runtime preloaded, since Python is not built with it (libstdc++
# too, so that the runtime finds the C++ exception functions). Leak checks are
# off: the interpreter keeps its allocations. Any error found stops the run.
ASAN_TREE := build/asan
ASAN_TESTS ?= tests/test_cpp_half_lanes.py tests/test_cpp_regions.py tests/test_collate.py tests/test_mix.py \
	tests/test_backward.py tests/test_uint8.py tests/test_fuzz.py tests/test_targets_exact.py tests/test_errors.py \
	tests/test_properties.py tests/test_mixup.py tests/test_regions.py tests/test_host_rows.py \
	tests/test_large.py::test_cpp_past_2_31_elements
test-asan: setup
	$(call copy_tree,$(ASAN_TREE))
	cd $(ASAN_TREE) && MIXUP_FUSED_SANITIZE=1 $(CURDIR)/$(VPY) setup.py -q build_ext --inplace
	cd $(ASAN_TREE) && LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libstdc++.so)" \
		ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		PYTHONPATH=$(CURDIR)/$(ASAN_TREE) $(CURDIR)/$(VPY) -m pytest -q -p no:cacheprovider -k "not triton" \
		$(ASAN_TESTS) $(ARGS)

# The GPU proof on a CUDA machine (torch and triton installed there, any
# Python): build + install, pytest -m gpu, the GPU benchmark, one summary
# table (bench/results/<gpu>-gpu-check.md). Without CUDA: a dry run.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) -m bench.gpu_check $(ARGS)

bench: build
	$(VPY) -m bench $(ARGS)

clean:
	rm -rf build *.egg-info mixup_fused/_C*.so $(BUILT) $(LIGHT_VENV)/.built
