# The hub, as a static binary on a distroless base (CA certificates, no
# shell), running as the non-root user nonroot (65532). Its SQLite store is
# pure Go (modernc.org/sqlite), so CGO stays off. Build from the
# repository's root:
#
#   docker build -f deploy/docker/hub.Dockerfile -t hub .
#   docker run -p 8080:8080 -v hub-data:/data hub
#
# The database lives in /data (HUB_DATA_DIR), owned by nonroot: mount a
# volume there. HUB_DATABASE_URL switches to PostgreSQL.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/hub ./cmd/hub \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hub /usr/local/bin/hub
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
# The hub listens on loopback by default; in a container it must listen on all interfaces.
ENV HUB_LISTEN=:8080 HUB_DATA_DIR=/data
USER nonroot:nonroot
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/hub"]
