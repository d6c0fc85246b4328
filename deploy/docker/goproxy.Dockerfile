# goproxy, the capturing sidecar, as a static binary on a distroless base
# (CA certificates, no shell), running as the non-root user nonroot (65532).
# Build from the repository's root:
#
#   docker build -f deploy/docker/goproxy.Dockerfile -t goproxy .
#
# In ECS it reads the CA from /etc/ssl/speedscale, which the init container
# writes (files of mode 0644, readable by this user); see docs/ecs.md.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/goproxy ./cmd/goproxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/goproxy /usr/local/bin/goproxy
# Writable by nonroot: local record files (CAPTURE_DIR) when there is no forwarder.
WORKDIR /home/nonroot
USER nonroot:nonroot
# 4143 inbound (the load balancer's target), 4140 outbound (the app's HTTP_PROXY, loopback by default).
EXPOSE 4143 4140
ENTRYPOINT ["/usr/local/bin/goproxy"]
