# Two commands on a fresh machine with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test test-fast lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml --rerun-incomplete
	@echo "Results: $(CURDIR)/results/demo  (report.html, cells.parquet, segmentation.ome.zarr, morphology.parquet, swc/, run.json)"

# one pytest worker per core (pytest-xdist), each given the next test as it frees up, in the order of
# tests/conftest.py (longest first); each workflow test runs Snakemake in its own folder; the 15 slowest
# tests are listed at the end, to keep that order and the suite's time in view
test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n $(CORES) --maxschedchunk 1 --durations 15

# everything but the end-to-end workflow and Slurm tests: the inner loop while developing
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not workflow and not slurm"

lint: $(BIN)/.installed
	$(BIN)/snakemake --lint --cores 1

bench: $(BIN)/.installed
	$(BIN)/python bench/baseline.py
	$(BIN)/python bench/dag.py

clean:
	rm -rf results .snakemake
