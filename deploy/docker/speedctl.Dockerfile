# speedctl, the CLI, as a static binary on a distroless base (CA
# certificates, no shell), running as the non-root user nonroot (65532):
# for tasks that run `speedctl mock` (docs/ecs.md, "A mock task") or
# `speedctl replay` in a cluster. Build from the repository's root:
#
#   docker build -f deploy/docker/speedctl.Dockerfile -t speedctl .

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/speedctl ./cmd/speedctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/speedctl /usr/local/bin/speedctl
# HOME is writable by nonroot: speedctl's config folder (~/.speedctl).
WORKDIR /home/nonroot
USER nonroot:nonroot
# 4140: speedctl mock's forward proxy (the app's HTTP_PROXY and HTTPS_PROXY).
EXPOSE 4140
ENTRYPOINT ["/usr/local/bin/speedctl"]
