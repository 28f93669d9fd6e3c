# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make book   [PRESET=quick|smoke|paper] [DEVICE=auto|cpu|cuda] [FRESH=1]
#   make test
PYTHON ?= python3
VENV   ?= .venv
PRESET ?= quick
DEVICE ?= auto
FRESH  ?=
FRESH_FLAG := $(if $(filter 1 yes true,$(FRESH)),--fresh)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test results seeds venv browser clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

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

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra

clean:
	rm -rf _build
