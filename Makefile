# The two commands of the README: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test check lint typecheck schema settings-table bench vendor-graphiql clean

$(BIN)/darkroom: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/darkroom

run: $(BIN)/darkroom
	$(BIN)/darkroom serve

check: lint typecheck

lint: $(BIN)/darkroom
	$(BIN)/ruff check server tests benchmarks client-examples
	$(BIN)/ruff format --check server tests benchmarks client-examples

typecheck: $(BIN)/darkroom
	$(BIN)/mypy

test: check
	$(BIN)/pytest

schema: $(BIN)/darkroom
	$(BIN)/darkroom export-schema --output schema.graphql

# The README's configuration table is written from server/settings.py's declarations.
settings-table: $(BIN)/darkroom
	$(BIN)/python -m server.settings_table README.md

# The push figures are compared with a Node GraphQL peer (benchmarks/peer: Fastify with Mercurius) and a floor,
# a bare Node `ws` broadcaster (benchmarks/floor); without npm both are reported as skipped.
# Options go in BENCH_ARGS: make bench BENCH_ARGS="--only ingest --ingest-baseline main"
bench: $(BIN)/darkroom
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix benchmarks/floor --no-audit --no-fund --silent && \
		npm ci --prefix benchmarks/peer --no-audit --no-fund --silent; \
	else echo "npm not found: the benchmarks' peer and floor (benchmarks/peer, benchmarks/floor) will be skipped"; fi
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Refresh GraphiQL's vendored builds (server/static/graphiql/vendor/) from npm; needs npm, never run by CI.
vendor-graphiql:
	bash scripts/vendor-graphiql.sh

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
