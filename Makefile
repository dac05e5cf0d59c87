# The two commands a newcomer needs: `make run` (service + demo data on the embedded
# PostgreSQL) and `make test`. Both create the virtualenv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test bench loadtest lint clean test-deps screenshot

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,load,otel]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/arbor serve --demo

# The rate-limit tests start a real Redis server (tests/redis_server.py), the ops tests run
# promtool (tests/test_ops_rules.py), and the pages' browser tests drive a real Chromium
# through Playwright (tests/test_pages_browser.py): Debian's redis-server, prometheus and
# chromium packages (Playwright's own browser download is not used).
test-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	    echo "installing redis-server (apt-get) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v promtool >/dev/null 2>&1 || { \
	    echo "installing prometheus (apt-get: promtool) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends prometheus; }
	@command -v chromium >/dev/null 2>&1 || { \
	    echo "installing chromium (apt-get) for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: $(STAMP) test-deps
	$(BIN)/pytest -q

# The README's picture of a demo conversation page (docs/conversation-page.png), by Playwright.
screenshot: $(STAMP) test-deps
	ARBOR_SCREENSHOT=1 $(BIN)/pytest -q tests/test_pages_browser.py -k screenshot

bench: $(STAMP)
	$(BIN)/python bench/render_latency.py

# Seeds the bench preset (once, under .arbor/loadtest), starts the service, runs a short
# Locust run gated by loadtest/slo.toml, stops everything; exit code = the gate's (0/1/2).
# LOADTEST_ARGS: e.g. "--users 40 --run-time 2m", "--setting concurrency_limit=1",
# "-- --slo-p99-ms 100" (after --: Locust's and the gate's own options). See loadtest/run.py.
LOADTEST_ARGS ?=
loadtest: $(STAMP)
	$(BIN)/python -m loadtest.run $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) .arbor .pytest_cache .hypothesis
