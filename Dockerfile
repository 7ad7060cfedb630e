# dchain's image: dchain (the client build: CLI, api, setup) and
# dchain-server (everything; `dchain worker` and `dchain dev` hand over to
# it) on Debian slim, with git and ssh for the build stage's source
# checkouts. Runs as uid 10001.
#   docker build -t dchain:0.1.0 .
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV GOEXPERIMENT=jsonv2 CGO_ENABLED=0 GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -tags dchain_client -o /out/dchain ./cmd/dchain \
 && go build -trimpath -ldflags="-s -w" -o /out/dchain-server ./cmd/dchain

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --home-dir /var/lib/dchain --create-home dchain
COPY --from=build /out/dchain /out/dchain-server /usr/local/bin/
USER 10001
WORKDIR /var/lib/dchain
ENV DCHAIN_CONFIG=/etc/dchain/dchain.yaml DCHAIN_WORK_DIR=/var/lib/dchain/work
ENTRYPOINT ["dchain"]
CMD ["--help"]
