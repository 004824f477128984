# elile: `make run` starts the server, `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Coverage is counted over every package, whichever test exercises it.
# Coverage of our code: the generated client is exercised, not measured.
COVERPKG := $(shell $(GO) list ./... | grep -v /clients/ | paste -sd, -)

.PHONY: clients ts-client api-diff api-lint run build test lint services vet fmt cover clean docs-assets docs

DOCS_JS := internal/httpapi/docsassets/redoc.standalone.js

## run: build and start the server (development defaults, local PostgreSQL and Redis)
run: build services
	./bin/elile serve

## build: compile bin/elile (with the /docs renderer from npm)
build: docs-assets
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/elile ./cmd/elile

## services: start the local PostgreSQL and Redis when they are down
services:
	@./scripts/services.sh

## docs-assets: fetch the API reference renderer (npm, locked) for embedding
docs-assets: $(DOCS_JS)

$(DOCS_JS): web/docs/package.json web/docs/package-lock.json
	cd web/docs && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	cp web/docs/node_modules/redoc/bundles/redoc.standalone.js $@

## test: every test, with the race detector, against the local PostgreSQL and Redis
test: services docs-assets
	$(GO) test -race -count=1 -coverpkg=$(COVERPKG) -coverprofile=coverage.out ./...
	@$(GO) tool cover -func=coverage.out | tail -n1

## clients: regenerate the Go client (clients/go/elile) and the TypeScript types (clients/ts) from the OpenAPI document
clients: build ts-client
	./bin/elile docs openapi-3.0 > clients/openapi-3.0.json
	$(GO) tool -modfile=tools/go.mod oapi-codegen -config clients/go/oapi-codegen.yaml clients/openapi-3.0.json

## ts-client: install the TypeScript client's tools (npm, locked), regenerate its types and compile it
ts-client:
	cd clients/ts && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm run --silent generate && npm run --silent build

## api-lint: Spectral (OWASP ruleset: web/apilint/.spectral.yaml) and Redocly on docs/openapi.json; fails on any error (CI runs it)
api-lint:
	cd web/apilint && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	cd web/apilint && npx spectral lint ../../docs/openapi.json -r .spectral.yaml --fail-severity error
	cd web/apilint && npx redocly lint ../../docs/openapi.json

## api-diff: fail on a breaking change to the API against docs/openapi.baseline.json (oasdiff, pinned in tools/go.mod)
api-diff:
	$(GO) tool -modfile=tools/go.mod oasdiff breaking docs/openapi.baseline.json docs/openapi.json --fail-on ERR --err-ignore docs/api-breaking-acknowledged.txt

## lint: golangci-lint (built from tools/go.mod) with the layering rules of .golangci.yml
lint:
	$(GO) tool -modfile=tools/go.mod golangci-lint run ./...

## docs: regenerate docs/configuration.md, docs/reference.md, docs/openapi.json and the ER diagram (tests fail when they drift)
docs: build services
	./bin/elile docs config > docs/configuration.md
	./bin/elile docs reference > docs/reference.md
	./bin/elile docs openapi > docs/openapi.json
	psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS elile_erd' postgres
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/elile_erd?sslmode=disable ./bin/elile schema erd --out docs
	psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS elile_erd' postgres

## cover: open the coverage report of the last `make test`
cover:
	$(GO) tool cover -html=coverage.out -o coverage.html && echo coverage.html

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin coverage.out coverage.html web/docs/node_modules $(DOCS_JS)
