# Every target that runs code sets up the virtualenv first, so each works on a fresh clone.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
# Offline data (MNIST IDX files, CIFAR-10 binaries): ../shared/data in development and CI.
L2LGD_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export L2LGD_DATA_DIR

.PHONY: setup test lint format demo reproduce example torch-example bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[torch]' \
		|| echo "the torch extra did not install: tests of l2lgd.torch will be skipped"
	touch $(STAMP)

setup: $(STAMP)

test: setup  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -n 2 --dist loadfile  # two workers, one per core; a file's tests stay together

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

PROFILE ?= default

reproduce: setup  ## every implemented paper experiment -> results/REPORT.md; PROFILE=paper for the paper's budget (a GPU)
	$(BIN)/l2l reproduce --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(TEST_SEED),--test-seed $(TEST_SEED))

example: setup  ## a flax model trained on MNIST with the shipped learned optimizer and with Adam
	$(BIN)/python examples/flax_mnist.py --out runs/example

torch-example: setup  ## a torch MLP trained on MNIST with l2lgd.torch.LearnedOptimizer and with tuned Adam
	$(BIN)/python examples/torch_mnist.py --out runs/torch_example

bench: setup  ## meta-training and evaluation throughput -> runs/bench.json
	$(BIN)/python scripts/benchmark.py --out runs/bench.json

clean:
	rm -rf $(VENV) runs results .pytest_cache .ruff_cache *.egg-info
