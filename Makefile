# elile: `make run` starts the server, `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Coverage is counted over every package, whichever test exercises it.
COVERPKG := ./...

.PHONY: run build test services vet fmt cover clean

## run: build and start the server (development defaults, local PostgreSQL and Redis)
run: build services
	./bin/elile serve

## build: compile bin/elile
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/elile ./cmd/elile

## services: start the local PostgreSQL and Redis when they are down
services:
	@./scripts/services.sh

## test: every test, with the race detector, against the local PostgreSQL and Redis
test: services
	$(GO) test -race -count=1 -coverpkg=$(COVERPKG) -coverprofile=coverage.out ./...
	@$(GO) tool cover -func=coverage.out | tail -n1

## cover: open the coverage report of the last `make test`
cover:
	$(GO) tool cover -html=coverage.out -o coverage.html && echo coverage.html

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin coverage.out coverage.html
