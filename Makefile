# make test    : create .venv if missing, install labkit[dev], run unit + notebook tests
# make report  : the same set-up, then run the notebooks into reports/$(PROFILE)/
# make bench   : the benchmark table (benchmarks/run)
# make gpu     : the whole report at $(PROFILE_GPU)'s sizes on one GPU, then minutes and images/s
#                a notebook (benchmarks/gpu.sh; no venv set-up: it runs where pip cannot reach)
# make lab     : JupyterLab on notebooks/ with the same data and cache paths; a notebook run there uses
#                $LABKIT_PROFILE (default cpu) and writes into reports/interactive/<profile>/
PROFILE ?= cpu
ONLY    ?=
PROFILE_GPU ?= full
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python

# Real data for development and CI lies in ../shared/data when it exists.
ifneq ($(wildcard ../shared/data),)
export LABKIT_DATA ?= $(abspath ../shared/data)
endif
ifneq ($(wildcard ../shared/data/cifar10-images/train),)
export LABKIT_CIFAR10_FOLDER ?= $(abspath ../shared/data/cifar10-images)
endif

.PHONY: test report bench gpu lab clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

# Unit tests, then nbval over the executed smoke reports: each is re-run and the
# cells marked NBVAL_CHECK_OUTPUT must reproduce their committed outputs.
test: $(VENV)/.installed
	@$(PY) -c "import platform, torch, torchvision; print(f'python {platform.python_version()} | torch {torch.__version__} | torchvision {torchvision.__version__} | cpu {torch.backends.cpu.get_cpu_capability()} | {torch.get_num_threads()} threads')"
	@start=$$(date +%s); $(PY) -m pytest tests reports/smoke --nbval-lax -p no:cacheprovider --durations=10; \
	  rc=$$?; echo "make test: wall time $$(( $$(date +%s) - start )) s"; exit $$rc

report: $(VENV)/.installed
	$(PY) -m labkit report --profile $(PROFILE) $(if $(ONLY),--only $(ONLY))

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

gpu:
	bash benchmarks/gpu.sh $(PROFILE_GPU)

# JupyterLab refuses root unless told (containers, CI machines)
lab: $(VENV)/.installed
	$(PY) -m jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
