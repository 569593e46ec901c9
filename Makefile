# The README's two commands: `make dev` (the main job) and `make test` (the whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR ?= $(CURDIR)/.cluster
LOCAL_KUBECONFIG := $(CLUSTER_DIR)/kubeconfig
include hack/cluster/versions.env
KUBECTL := $(HOME)/.cache/isvc-operator/bin/kubectl-$(KUBE_VERSION)

.PHONY: help venv lint binaries stores node-deps images cluster-up cluster-down dev dev-stop test test-unit test-cluster test-e2e test-pytorch-server manifests render bench bench-pytorch bench-storage bench-storage-cache chaos

help:
	@echo "make dev           local control plane (unless KUBECONFIG reaches a cluster) + CRD + operator + samples"
	@echo "make test          the whole test suite (unit, real control plane, install, PyTorch server)"
	@echo "make lint          ruff (lint + format check), mypy --strict (operator), import-linter (layers)"
	@echo "make cluster-up    start the local control plane (kube-apiserver, etcd, kcm, scheduler, kwok) and its real node"
	@echo "make images        build the operator, PyTorch server and test images (buildah) and load them into the real node"
	@echo "make cluster-down  stop it and the operator make dev started (PURGE=1 also deletes its state)"
	@echo "make dev-stop      stop the operator started by make dev"
	@echo "make manifests     regenerate manifests/install.yaml from the Helm chart"
	@echo "make bench [N=300] [REPEAT=3] operator vs the API server's floor (bench/operator_bench.py)"
	@echo "make bench-pytorch the PyTorch server vs KServe, LitServe, MLServer, Ray Serve, TorchServe and the in-process floor"
	@echo "make bench-storage the storage program vs the stores' reference clients (bench/storage_bench.py)"
	@echo "make bench-storage-cache  a second replica's Ready time with and without the model cache, on the real node"
	@echo "make chaos         fault injection and fuzzing figures (bench/chaos.py)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,storage]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

binaries:
	bash hack/cluster/build.sh all >/dev/null
	bash hack/kstatus/build.sh >/dev/null
	bash hack/cluster/build.sh ghz >/dev/null

# The object-store servers the storage program is tested against (moto, fake-gcs-server, Azurite).
stores:
	bash hack/stores/build.sh all >/dev/null

# The real node's runtime and the image builder, from Debian's packages (once; as root).
node-deps:
	bash hack/node/install.sh

images: node-deps
	bash hack/images/build.sh --load all

cluster-up: node-deps
	bash hack/cluster/up.sh

# The dev operator first: left running, it retries against a dead API server (and a purge would
# lose its pidfile, so the next `make dev` started a second one).
cluster-down:
	bash hack/dev.sh stop
	bash hack/cluster/down.sh $(if $(PURGE),--purge,)

dev: venv node-deps
	bash hack/dev.sh

dev-stop:
	bash hack/dev.sh stop

test: venv binaries node-deps stores
	bash hack/test.sh

test-unit: venv
	$(PY) -m pytest tests/unit -q

test-cluster: venv binaries
	$(PY) -m pytest tests -q -m cluster --ignore tests/e2e

test-e2e: venv binaries node-deps
	$(PY) -m pytest tests/e2e -q

test-pytorch-server:
	bash servers/pytorch/run-tests.sh

manifests: binaries
	bash hack/render-manifests.sh

render: venv
	$(VENV)/bin/isvc-operator render -f $(or $(FILE),manifests/samples/tensorflow-pvc.yaml)

bench: venv binaries
	$(PY) bench/operator_bench.py $(if $(N),--n $(N),) $(if $(REPEAT),--repeat $(REPEAT),)

bench-pytorch:
	bash servers/pytorch/run-tests.sh --co -q >/dev/null
	servers/pytorch/.venv/bin/python bench/pytorch_server.py

bench-storage: venv stores
	$(PY) bench/storage_bench.py

bench-storage-cache: venv binaries node-deps stores
	$(PY) bench/storage_cache.py

chaos: venv binaries
	$(PY) bench/chaos.py $(if $(QUICK),--quick,)
