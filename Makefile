# The PED companion.  `make book` builds the executed HTML book, `make test` runs the tests.
# Both create (once) and reuse the virtual environment .venv/ with the exact versions of the lock
# file requirements-lock.txt (hash-checked); pyproject.toml declares the compatible ranges.

# The interpreter of the virtual environment: the first of python3.11, 3.12, 3.13, python3
# (ped needs Python 3.11 or later); `make PYTHON=python3.13 test` picks one.
PYTHON ?= $(firstword $(shell command -v python3.11 python3.12 python3.13 python3 2>/dev/null) python3)
LOCK   := requirements-lock.txt
# TORCH_INDEX=https://download.pytorch.org/whl/cpu: torch and torchvision at the locked versions
# from that index (the CPU-only build; the lock's 4.2 GB of CUDA libraries are left out), the
# rest from the lock (see README).
TORCH_INDEX ?=
# The CUDA stack of the lock, left out when TORCH_INDEX names another build of torch.
CUDA_STACK := ^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUILD  := _build

.PHONY: help venv lock wheel-check system-deps browser-deps browser-packages test book notebooks test-book zoo ground-truth ground-truth-v1 selection-noise regime regime-scores rank-evidence verdict verdict-v1 replication sensitivity bench clean

help:
	@echo "make book   - execute every notebook with papermill and build the HTML book in $(BUILD)/html"
	@echo "make test   - run the test suite (unit tests and notebook execution)"
	@echo "make wheel-check - build the sdist and wheel, install the wheel alone, smoke-test it"
	@echo "make test-book - after make book: check every page in headless Chromium (needs chromium)"
	@echo "make zoo, make ground-truth - retrain the embedded benchmark (hours; resumable)"
	@echo "make selection-noise, make replication - the verdict's selection reruns and simulations"
	@echo "make regime, make regime-scores - the regime chapter's ground truth (hours) and scores (resumable)"
	@echo "make sensitivity - rerun the PED hyperparameter sweeps on Dask (about 20 min)"
	@echo "make bench  - run the speed benchmarks in benchmarks/"
	@echo "make lock   - regenerate $(LOCK) from pyproject.toml's ranges (needs the package index)"
	@echo "make clean  - remove build outputs (keeps $(VENV))"

venv: $(STAMP)

# Debian packages: Fashion-MNIST, Open Clip Art and the font packages whose glyphs ped.bench.tasks
# renders (offline data of the embedded benchmark), for every target; chromium only for the
# browser test of the built book (make test-book; PED_CHROMIUM names another browser).  Missing
# ones are installed with apt-get as root, through sudo otherwise; without either, the command
# that installs them is printed and make stops.
GLYPH_FONTS     := fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-urw-base35 \
                   fonts-freefont-ttf fonts-crosextra-carlito fonts-crosextra-caladea fonts-lato \
                   fonts-open-sans fonts-linuxlibertine
DEBIAN_PACKAGES := dataset-fashion-mnist openclipart-png $(GLYPH_FONTS)
BROWSER_PACKAGES := chromium

define install_debian
	@dpkg -s $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	  elif command -v sudo >/dev/null 2>&1; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	  else \
	    echo "missing Debian packages, and neither root nor sudo: apt-get install $(1)" >&2; exit 1; \
	  fi; }
endef

system-deps:
	$(call install_debian,$(DEBIAN_PACKAGES))

browser-deps:
	@if [ -n "$$PED_CHROMIUM" ]; then test -x "$$PED_CHROMIUM" || { echo "PED_CHROMIUM=$$PED_CHROMIUM is not an executable" >&2; exit 1; }; \
	else $(MAKE) --no-print-directory browser-packages; fi

browser-packages:
	$(call install_debian,$(BROWSER_PACKAGES))

# Reinstall when the lock or the package's metadata change: every locked package, its hash
# checked, then ped itself (editable, no dependency left to resolve).
$(STAMP): pyproject.toml $(LOCK) | system-deps
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "ped needs Python 3.11 or later; $(PYTHON) is not: make PYTHON=python3.12 ..." >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(strip $(TORCH_INDEX)),)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
else
	grep -E "$(CUDA_STACK)" $(LOCK) | sed -E 's/ .*//' | grep -E '^(torch|torchvision)==' > $(VENV)/torch.txt
	$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) -r $(VENV)/torch.txt
	awk '/^[^ #]/ { skip = ($$0 ~ /$(CUDA_STACK)/) } !skip' $(LOCK) > $(VENV)/lock-without-cuda.txt
	$(PY) -m pip install --quiet --require-hashes -r $(VENV)/lock-without-cuda.txt
endif
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Regenerate the lock from pyproject.toml's ranges (a universal resolution for every supported
# Python, with hashes; versions already locked are kept unless a range excludes them), with uv in
# a throw-away environment.  `make lock UPGRADE=1` moves every package to its newest version.
lock:
	rm -rf $(BUILD)/lock-tools && $(PYTHON) -m venv $(BUILD)/lock-tools
	$(BUILD)/lock-tools/bin/pip install --quiet uv
	$(BUILD)/lock-tools/bin/uv pip compile --quiet pyproject.toml --all-extras --universal \
		--python-version 3.11 --generate-hashes --custom-compile-command "make lock" \
		$(if $(UPGRADE),--upgrade) -o $(LOCK)
	rm -rf $(BUILD)/lock-tools

test: $(STAMP)
	$(PY) -m pytest

# The package as a user installs it: build the sdist and, from it, the wheel (PyPA's build, in a
# throw-away environment), install the wheel alone into a clean environment (the core
# dependencies only) and run tests/wheel_smoke.py there, outside the checkout.
WHEEL_DIR ?= $(BUILD)/dist
WHEEL_ENV ?= $(BUILD)/wheel-env
wheel-check:
	rm -rf $(WHEEL_DIR) $(WHEEL_ENV) $(WHEEL_ENV)-build
	$(PYTHON) -m venv $(WHEEL_ENV)-build
	$(WHEEL_ENV)-build/bin/pip install --quiet build
	$(WHEEL_ENV)-build/bin/python -m build --outdir $(WHEEL_DIR) .
	$(PYTHON) -m venv $(WHEEL_ENV)
	$(WHEEL_ENV)/bin/pip install --quiet $(WHEEL_DIR)/*.whl
	cd $(WHEEL_DIR) && PATH=$(abspath $(WHEEL_ENV))/bin:$$PATH \
		$(abspath $(WHEEL_ENV))/bin/python $(CURDIR)/tests/wheel_smoke.py
	du -sh $(WHEEL_ENV) | sed 's/\t.*/ installed: ped and its core dependencies/'
	rm -rf $(WHEEL_ENV)-build

# 1. execute each notebooks/*.md with papermill into $(BUILD)/executed (outside git), then the
#    landing page, which quotes numbers from the executed chapters;
# 2. stage the book's pages and the executed notebooks in $(BUILD)/src (book/stage.py);
# 3. build the HTML with Jupyter Book (warnings are errors), then check it works offline.
notebooks: $(STAMP)
	$(VENV)/bin/ped --verbose execute --out $(BUILD)/executed
	$(VENV)/bin/ped --verbose execute book/intro.md --out $(BUILD)/executed \
		-p executed_dir=$(CURDIR)/$(BUILD)/executed

book: notebooks
	rm -rf $(BUILD)/html $(BUILD)/.doctrees
	$(PY) book/stage.py --executed $(BUILD)/executed --out $(BUILD)/src
	$(VENV)/bin/jupyter-book build $(BUILD)/src --config $(CURDIR)/_config.yml \
		--path-output . --warningiserror --nitpick --keep-going
	$(PY) book/check_html.py $(BUILD)/html
	@echo "The book is in $(BUILD)/html/index.html"

# The built book in a real browser (Debian's chromium): offline, MathJax, images, links.
test-book: $(STAMP) browser-deps
	$(PY) -m pytest -m browser tests/test_book_browser.py

# The embedded benchmark: pretrain the self-supervised zoo, then its fine-tuning ground truth.
# Hours on 2 cores (a GPU is used when present); every unit is resumable: rerun to continue.
# The rebuilt zoo (stride-2 stem, batched augmentation, 80 epochs) trains into data/zoo_v2,
# two units side by side (JOBS); the book reads data/zoo until its ground truth is complete.
JOBS ?= 2
zoo: $(STAMP)
	$(VENV)/bin/ped --verbose zoo train --out data/zoo_v2 --jobs $(JOBS) --no-progress

# The rebuilt benchmark's ground truth (ped.bench.zoo.finetune.PROTOCOL) of data/zoo_v2, into
# data/ground_truth_v2; `make ground-truth-v1` reruns the first benchmark's.
ground-truth: $(STAMP)
	$(VENV)/bin/ped --verbose zoo groundtruth --out data/zoo_v2 --gt-out data/ground_truth_v2 \
		--jobs $(JOBS)

# Selection noise (chapter 9): the model selection of the rebuilt ground truth rerun with a second
# selection seed on 24 randomly drawn model x task cells, with 6 evaluation seeds wherever the
# choice changes, into data/selection_noise (resumable run by run; about 2 hours on 2 cores).
selection-noise: $(STAMP)
	$(VENV)/bin/ped --verbose zoo selection-noise --out data/zoo_v2 --cells 24 --jobs $(JOBS)

# The regime chapter's ground truth: the rebuilt zoo on glyphs62's class subsets and the 5-epoch
# zoo on the rebuilt tasks, at settings the rebuilt ground truth selected, into data/regime
# (resumable run by run; about 5 hours on 2 cores).
regime: $(STAMP)
	$(VENV)/bin/ped --verbose zoo regime --out data/zoo_v2 --jobs $(JOBS)

# The regime chapter's scores: every axis point scored with and without PED, into
# data/regime/scores (resumable task by task; about an hour on 2 cores, most of it the 2048-d lift).
regime-scores: $(STAMP)
	$(VENV)/bin/ped --verbose verdict --regime all

# The figures behind ped rank's defaults, quoted by `ped rank --help` and checked by chapter 13.
rank-evidence: $(STAMP)
	TQDM_DISABLE=1 $(PY) -c "from ped.bench.choose import write_defaults_evidence as w; w()"

ground-truth-v1: $(STAMP)
	$(VENV)/bin/ped zoo finetune --out data/zoo --protocol finetune
	$(VENV)/bin/ped zoo finetune --out data/zoo --protocol linear

# PED's hyperparameter sweeps (chapter 11): the Table 1 chapter executed per grid point by
# `ped sweep` on a Dask LocalCluster; results.csv of each sweep is committed under data/sweeps.
SWEEP      := $(VENV)/bin/ped --verbose sweep notebooks/09_table1.md --workers 2
SWEEP_ARGS := -p n_resamples=0 -p n_endpoint=20 -p 'metrics=[["logme","sfda","gbc"]]' \
              -p 'baselines=[[]]' -p 'sa_metrics=[[]]'
NSIGMAS    := -p 'nsigma=[0.1,0.3,0.6,0.9,1.2]' -p 'variant=["official","paper"]'

sensitivity: $(STAMP)
	$(SWEEP) --out data/sweeps/sensitivity_time_step $(SWEEP_ARGS) $(NSIGMAS) \
		-p 'time_step=[0.05,0.1,0.2]'
	$(SWEEP) --out data/sweeps/sensitivity_max_steps $(SWEEP_ARGS) $(NSIGMAS) \
		-p 'max_steps=[1,3,12]'
	$(SWEEP) --out data/sweeps/sensitivity_reference $(SWEEP_ARGS) \
		-p 'nsigma=[0.3,0.6,0.9]' -p 'variant=["official","paper"]' \
		-p 'reference=["source","target"]'

# The verdict's scores (ped.bench.verdict): every arm of the primary endpoint, per task, on the
# rebuilt benchmark's zoo into data/verdict/v2, then the secondary sets (the other ball radius,
# training images only) and NLEEP under five mixture seeds into its subfolders (resumable per
# task; minutes on 2 cores);
# `make verdict-v1` rescores the first benchmark's into data/verdict/v1.
verdict: $(STAMP)
	$(VENV)/bin/ped --verbose verdict --benchmark v2
	$(VENV)/bin/ped --verbose verdict --benchmark v2 --set nsigma0.3
	$(VENV)/bin/ped --verbose verdict --benchmark v2 --set train
	$(VENV)/bin/ped --verbose verdict --benchmark v2 --seed-spread nleep
	$(VENV)/bin/ped --verbose verdict --benchmark v2 --control radial

# The verdict read as a replication (chapter 9): the benchmark's shape measured from the stored
# scores, then the null, power and duplicate-model simulations into data/verdict/v2/simulations
# (ped.bench.replication; resumable per unit, about 10 minutes on 2 cores).
replication: $(STAMP)
	$(VENV)/bin/ped --verbose verdict --benchmark v2 --replication

verdict-v1: $(STAMP)
	$(VENV)/bin/ped --verbose verdict --benchmark v1

bench: $(STAMP)
	$(PY) benchmarks/bench_dynamics.py

clean:
	rm -rf $(BUILD) .pytest_cache .hypothesis .benchmarks
