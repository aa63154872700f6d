# pg-ml-kit — the two commands a newcomer needs are `make lab` and `make test`.
# Every target is a thin wrapper around scripts/ (which say what they do as they go).
# KIT_BACKEND=docker|native|external forces how the database runs (default: Docker if an engine answers).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

.PHONY: help lab test test-browser test-isolated db db-stop db-reset db-destroy venv check bench slides html navigation replica replica-stop clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

lab: db venv  ## provision everything, then start JupyterLab on notebooks/
	@scripts/lab.sh

test: db venv  ## provision everything, then every test (random order) and every notebook under nbval
	$(PY) -m pgmlkit.check
	scripts/test_modules.sh
	scripts/test_notebooks.sh
	scripts/test_browser.sh

test-browser: db venv  ## the attendee's path in chromium: JupyterLab Run All, chart, %sql table, exercise, slides, pages
	scripts/test_browser.sh

test-isolated: db venv  ## each test module alone on a freshly reset database (no test leans on another's rows)
	scripts/test_isolated.sh

db:  ## start the database only; the last line printed is its URL
	@scripts/db.sh up

db-stop:  ## stop the database
	@scripts/db.sh stop

db-reset:  ## drop and recreate the workshop database (start the course over)
	@scripts/db.sh reset

db-destroy:  ## remove the kit's cluster/container, its read replica and its server-side packages
	@scripts/db.sh destroy

venv:  ## the client environment (.venv + the pg-ml-kit Jupyter kernel)
	@scripts/client_env.sh

bench: db venv  ## measure the talk's trade-offs on this machine -> build/bench.json (QUICK=1: a minute or few)
	scripts/bench.sh $(if $(QUICK),--quick) --output build/bench.json

check: db venv  ## the setup check of notebook 00, in the terminal
	@$(PY) -m pgmlkit.check

replica:  ## a streaming read replica of the kit's database on port 5500 (REPLICA_PORT)
	@scripts/replica.sh up

replica-stop:  ## stop the read replica (scripts/replica.sh destroy removes it and its slot)
	@scripts/replica.sh stop

navigation:  ## regenerate navigation cells, notebooks/index.ipynb, the README course table and the agenda
	$(PY) tools/add_navigation.py
	$(PY) tools/build_index.py

slides: venv  ## reveal.js slides of every notebook -> build/slides/ (offline; npm fetches reveal.js once)
	$(PY) tools/build_slides.py

html: venv  ## the executed notebooks as web pages, nothing re-run -> build/html/index.html
	$(PY) tools/build_html.py

clean:  ## remove .venv, build/ and caches (the database stays; see db-destroy)
	rm -rf .venv build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
