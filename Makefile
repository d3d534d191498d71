# The two commands of the README:  `make train`  and  `make test`.
# Each creates .venv and installs what it needs on first use.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
FMNIST ?= /usr/share/datasets/fashion-mnist
CONFIG ?= configs/fashion_mnist.yaml
PYTEST_ARGS ?=

.PHONY: help install data train test test-fast wheel-smoke lint bench docs clean

help:
	@echo "make train     train the default (I2E Fashion-MNIST, CPU) and test it"
	@echo "make test      run the test suite, slow tests included (what CI runs)"
	@echo "make test-fast the test suite without the slow tests"
	@echo "make wheel-smoke build the wheel, install it in a fresh venv, run it from outside the repository"
	@echo "make lint      ruff"
	@echo "make bench     the benchmarks of docs/BENCHMARKS.md (BENCHES=\"onnx_speed converter\" picks some)"
	@echo "make docs      regenerate what README/docs take from the default config (pictures, outputs, tables), shipped --help texts"

# torch: .ci/install-torch picks the build. A host without a GPU never gets the multi-gigabyte CUDA build: the
# CPU wheel pip finds (here one lies on local disk), else PyTorch's CPU index; a GPU host the normal wheels.
# Override: make install TORCH_BUILD=cpu|cuda TORCH="torch==X.Y". onnxruntime and onnxruntime-gpu must never
# be installed together: one extra or the other.
HAS_GPU := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo 1)
TORCH_BUILD ?= $(if $(HAS_GPU),cuda,cpu)
ONNX_EXTRA := $(if $(filter cuda,$(TORCH_BUILD)),onnx-gpu,onnx)
export TORCH TORCH_BUILD

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	bash .ci/install-torch $(PY)
	$(PIP) install --quiet -e ".[$(ONNX_EXTRA),dev]"
	# SpikingJelly is only the baseline of tests and benchmarks; its own dependencies would pull torchvision
	$(PIP) install --quiet --no-deps "spikingjelly==0.0.0.0.14"
	# Norse reads our NIR graphs in the tests (the second simulator); it lists torchvision only for its datasets
	$(PIP) install --quiet --no-deps "norse==1.1.0"
	# every subcommand's --help from the cache (commands/help_cache.py): even the first one then starts at once
	$(PY) -m i2e_lightning --warm-help || true
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST, the embedded default: Debian's package where apt exists, else a download.
data: $(STAMP)
	@if [ -f "$(FMNIST)/train-images-idx3-ubyte.gz" ] || [ -f "$(FMNIST)/train-images-idx3-ubyte" ]; then \
		echo "Fashion-MNIST found in $(FMNIST)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist); \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
		sudo apt-get install -y -q dataset-fashion-mnist || (sudo apt-get update -q && sudo apt-get install -y -q dataset-fashion-mnist); \
	else \
		$(PY) -m i2e_lightning download fashion_mnist --dir data/fashion-mnist; \
	fi

train: data
	$(PY) -m i2e_lightning fit --config $(CONFIG)
	$(PY) -m i2e_lightning test --config $(CONFIG) --ckpt_path best

test: data
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)
	bash .ci/wheel-smoke $(PY)

wheel-smoke: data
	bash .ci/wheel-smoke $(PY)

test-fast: data
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# every part of README.md / docs/ marked <!-- make-docs:... --> (and the pictures, and export/i2e_runtime.py);
# running it twice changes nothing
docs: data
	$(PY) docs/generate.py

# every benchmark of docs/BENCHMARKS.md that runs on the CPU in minutes (paper_tables takes ~35 min: add it
# with BENCHES="paper_tables"); tables printed, benchmarks/results/ left as it is
BENCHES ?= converter odg training dataloader random_resized_crop memory fidelity official_parity onnx_speed \
	onnx_classifier_speed nir_agreement startup
bench: $(STAMP)
	@set -e; for b in $(BENCHES); do echo "== python -m i2e_lightning bench $$b"; $(PY) -m i2e_lightning bench $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache lightning_logs
