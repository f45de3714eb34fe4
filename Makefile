# Every target that runs code sets up the virtualenv first, so each works on a fresh clone.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
# Offline data (MNIST IDX files, CIFAR-10 binaries): ../shared/data in development and CI.
L2LGD_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export L2LGD_DATA_DIR

.PHONY: setup test lint format demo reproduce reproduce-quadratic reproduce-mnist bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: setup  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: setup  ## meta-train on quadratics (small budget), compare with tuned baselines, plot
	$(BIN)/l2l meta-train --task quadratic --config configs/demo.yaml --out runs/demo --force
	$(BIN)/l2l compare --task quadratic --config configs/demo.yaml --learned runs/demo --out runs/demo/compare
	@echo "demo outputs: runs/demo/ (checkpoints, metrics.jsonl, meta_training.png) and runs/demo/compare/ (summary.md, loss.png, loss.pdf)"

MNIST_PROBES := mnist_200steps mnist_40units mnist_2layers mnist_relu

reproduce: reproduce-quadratic reproduce-mnist  ## every implemented paper experiment -> results/
	@echo "figures and tables: results/*/ (loss.png, loss.pdf, summary.md)"

reproduce-quadratic: setup  ## the paper's quadratics (both variants) with the full budget
	$(BIN)/l2l meta-train --task quadratic --config configs/quadratic.yaml --out runs/quadratic --force
	$(BIN)/l2l compare --task quadratic --config configs/quadratic.yaml --learned runs/quadratic --out results/quadratic
	$(BIN)/l2l meta-train --task quadratic --config configs/quadratic_deepmind.yaml --out runs/quadratic_deepmind --force
	$(BIN)/l2l compare --task quadratic --config configs/quadratic_deepmind.yaml --learned runs/quadratic_deepmind --out results/quadratic_deepmind

reproduce-mnist: setup  ## MNIST (needs the IDX files in $L2LGD_DATA_DIR) and its generalization probes
	$(BIN)/l2l meta-train --task mnist --config configs/mnist.yaml --out runs/mnist --force
	$(BIN)/l2l compare --task mnist --config configs/mnist.yaml --learned runs/mnist --out results/mnist
	for probe in $(MNIST_PROBES); do \
	  $(BIN)/l2l compare --task mnist --config configs/$$probe.yaml --learned runs/mnist --out results/$$probe || exit 1; \
	done

bench: setup  ## meta-training and evaluation throughput -> runs/bench.json
	$(BIN)/python scripts/benchmark.py --out runs/bench.json

clean:
	rm -rf $(VENV) runs results .pytest_cache .ruff_cache *.egg-info
