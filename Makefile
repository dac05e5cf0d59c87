# The two commands a newcomer needs: `make run` (service + demo data on the embedded
# PostgreSQL) and `make test`. Both create the virtualenv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,load]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/arbor serve --demo

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/render_latency.py

clean:
	rm -rf $(VENV) .arbor .pytest_cache .hypothesis
