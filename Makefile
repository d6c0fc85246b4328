# The README's two commands and a few helpers.
GO ?= go
BIN := bin

.PHONY: run test build bench clean

## run: goproxy on its embedded defaults, records to ./tapwire-records
run: build
	$(BIN)/goproxy -reverse-port 8080

## test: the whole suite, installing the tools it drives (what CI runs)
test:
	scripts/test

## build: every command into ./bin
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## bench: load comparison against nginx and the Go benchmarks
bench: build
	bench/run

clean:
	rm -rf $(BIN) tapwire-records
