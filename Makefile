# The README's two commands and a few helpers.
GO ?= go
BIN := bin

.PHONY: run test build bench clean

## run: the whole system on this machine (speedctl demo): hub, forwarder, goproxy, a demo app and its traffic; Ctrl-C stops it
run: build
	$(BIN)/speedctl demo

## test: the whole suite, installing the tools it drives (what CI runs)
test:
	scripts/test

## build: every command into ./bin
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## bench: every benchmark beside its baseline; writes bench/RESULTS.md (about 18 min)
bench:
	bench/all

clean:
	rm -rf $(BIN) tapwire-records
