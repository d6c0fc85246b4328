# The forwarder, as a static binary on a distroless base (CA certificates,
# no shell), running as the non-root user nonroot (65532). Build from the
# repository's root:
#
#   docker build -f deploy/docker/forwarder.Dockerfile -t forwarder .
#
# Its spool and any directory sink live under /var/lib/tapwire, owned by
# nonroot; mount a volume there to keep the spool across restarts.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/forwarder ./cmd/forwarder \
 && mkdir -p /out/var/lib/tapwire

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/forwarder /usr/local/bin/forwarder
COPY --from=build --chown=65532:65532 /out/var/lib/tapwire /var/lib/tapwire
WORKDIR /var/lib/tapwire
ENV FORWARDER_SPOOL_DIR=/var/lib/tapwire/spool
USER nonroot:nonroot
EXPOSE 8888
ENTRYPOINT ["/usr/local/bin/forwarder"]
