# DOSA artifact: `make reproduce` runs every experiment, `make test` checks everything.
# Needs only python3.11 and make; everything else goes into $(VENV).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
EXECUTED := $(patsubst notebooks/%,artifacts/%,$(NOTEBOOKS))
SMOKE := build/smoke
PAPERMILL := $(BIN)/papermill --no-progress-bar --log-level WARNING

.PHONY: reproduce test venv data bench lint notebooks claims clean $(EXECUTED)

reproduce: venv data bench notebooks claims

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

data: $(STAMP)
	$(BIN)/dosa fetch-data

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py --claims
	$(BIN)/python benchmarks/bench_search.py --claims

notebooks: $(EXECUTED)

# Each notebook runs in the full profile into a temporary file that replaces the artifact only
# when the whole notebook succeeded; a failed run is kept in build/failed/ for inspection.
$(EXECUTED): artifacts/%.ipynb: notebooks/%.ipynb $(STAMP)
	@mkdir -p artifacts build/failed
	DOSA_ARTIFACTS_DIR=$(CURDIR)/artifacts $(PAPERMILL) $< build/$*.running.ipynb -p profile full \
	  && mv build/$*.running.ipynb $@ \
	  || { mv build/$*.running.ipynb build/failed/$*.ipynb 2>/dev/null; exit 1; }

nb-%: $(STAMP)
	$(MAKE) $(filter artifacts/$*%,$(EXECUTED))

claims: $(STAMP)
	$(BIN)/python -m dosa.claims --update-readme README.md

lint: $(STAMP)
	$(BIN)/ruff check dosa tests benchmarks

# Unit tests + every notebook in the smoke profile (parameters applied by papermill, executed
# and checked by nbval), all in one pytest run. Smoke notebooks write into build/, never into
# artifacts/.
test: $(STAMP)
	$(BIN)/ruff check dosa tests benchmarks
	rm -rf $(SMOKE) && mkdir -p $(SMOKE)/notebooks $(SMOKE)/artifacts
	for nb in $(NOTEBOOKS); do \
	  $(PAPERMILL) --prepare-only $$nb $(SMOKE)/$$nb -p profile smoke || exit 1; done
	DOSA_ARTIFACTS_DIR=$(CURDIR)/$(SMOKE)/artifacts $(BIN)/pytest -q -p no:cacheprovider \
	  tests $(SMOKE)/notebooks --nbval-lax

clean:
	rm -rf build $(VENV)
