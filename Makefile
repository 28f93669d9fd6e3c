# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make book   [PRESET=quick|smoke|paper] [DEVICE=auto|cpu|cuda]
#   make test
PYTHON ?= python3
VENV   ?= .venv
PRESET ?= quick
DEVICE ?= auto
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test results venv browser clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/python scripts/build_book.py --preset $(PRESET) --device $(DEVICE)
	@echo "book: _build/html/index.html"

# re-execute every chapter at PRESET into results/<preset>/<notebook>/ (executed notebook + metrics.json);
# commit first: metrics.json records the commit and whether the work tree was clean
results: $(STAMP)
	$(BIN)/python scripts/build_book.py --preset $(PRESET) --device $(DEVICE) --results-dir results --no-html

# headless Chromium and chromedriver for tests/test_browser.py (Debian's packages; nothing to do when present)
browser:
	sh scripts/setup_browser.sh

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra

clean:
	rm -rf _build
