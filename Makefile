# Two commands for a newcomer: `make run` and `make test`. Everything else
# (virtualenv, Python packages, buf from npm) is installed on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF := node_modules/.bin/buf
PROTOS := $(wildcard protos/liya/engine/v1/*.proto)
TS := clients/typescript
TS_STAMP := $(TS)/node_modules/.installed
DESCRIPTORS := build/liya-engine.binpb
# googleapis' google/api/{annotations,http}.proto, laid out from the installed
# googleapis-common-protos (buf.yaml reads them as a second module).
PROTO_DEPS := build/proto-deps/google/api/annotations.proto

.PHONY: run test test-node lint breaking gen check-gen descriptors bench token fake-providers clean install proto-deps

install: $(STAMP) $(BUF) $(TS_STAMP)

# The server depends on the client distribution (clients/: the generated stubs
# and liya_engine_client); one pip command installs both, the client from here.
$(STAMP): pyproject.toml clients/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -e ./clients -e '.[dev]'
	touch $@

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	touch $@

# The TypeScript client's packages, exactly as its package-lock.json pins them.
$(TS_STAMP): $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --silent
	touch $@

$(PROTO_DEPS): $(STAMP) scripts/proto_deps.py
	$(BIN)/python scripts/proto_deps.py build/proto-deps
	touch $@

proto-deps: $(PROTO_DEPS)

## Serve gRPC on 127.0.0.1:50051 and HTTP/JSON on 127.0.0.1:8080, with SQLite
## and development secrets under .dev/.
run: $(STAMP)
	LIYA_HTTP_LISTEN_ADDRESS=$${LIYA_HTTP_LISTEN_ADDRESS-127.0.0.1:8080} $(BIN)/liya-engine serve --dev

## Print a development token: make -s token TENANT=acme
token: $(STAMP)
	@$(BIN)/liya-engine token --dev --tenant $(or $(TENANT),acme)

## Run the fake OpenAI/Anthropic/Azure servers for a local demo.
fake-providers: $(STAMP)
	$(BIN)/liya-engine fake-providers

## Lint, check the generated stubs, and run the whole test suite (Node, then Python).
test: $(STAMP) $(BUF) $(TS_STAMP) lint check-gen
	$(MAKE) --no-print-directory test-node
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## The TypeScript client's node --test suite, against the real server.
test-node: $(STAMP) $(TS_STAMP)
	cd $(TS) && LIYA_ENGINE_PYTHON=$(abspath $(BIN)/python) npm test --silent

lint: $(STAMP) $(BUF) $(PROTO_DEPS)
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(MAKE) --no-print-directory breaking
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Proto changes must not break callers: compare with the last released protos
## (a buf image checked in under protos/baseline/), or with BREAKING_AGAINST,
## e.g. an image built at another commit (`buf build -o old.binpb` there, after
## `make proto-deps`: a bare git ref lacks build/proto-deps, which git ignores).
BREAKING_AGAINST ?= protos/baseline/liya-engine-v1.0.binpb
breaking: $(BUF) $(PROTO_DEPS)
	$(BUF) breaking protos --against '$(BREAKING_AGAINST)'

## Regenerate from protos/: the Python stubs in clients/, the TypeScript stubs
## in clients/typescript/src/gen and the server's descriptor set (reflection).
gen: $(STAMP) $(BUF) $(TS_STAMP)
	$(BIN)/python scripts/gen_stubs.py clients
	$(BIN)/python scripts/gen_polyglot.py

check-gen: $(STAMP) $(BUF) $(TS_STAMP)
	$(BIN)/python scripts/gen_stubs.py --check clients
	$(BIN)/python scripts/gen_polyglot.py --check

## Write build/liya-engine.binpb: a FileDescriptorSet of every API proto with
## its imports and comments (for grpcurl -protoset, Envoy, other languages).
descriptors: $(STAMP)
	$(BIN)/python scripts/gen_polyglot.py --descriptor-set $(DESCRIPTORS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules $(TS)/node_modules $(TS)/dist build .pytest_cache .ruff_cache
