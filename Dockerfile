# syntax=docker/dockerfile:1

# The Quicksilver hub as a container image: a build stage with the Rust toolchain, then a small
# Debian runtime that runs the binary as an unprivileged numeric user.
#
#   docker build -t quicksilver .
#   docker run --rm -p 8080:8080 -e MERCURE_JWT_KEY=... quicksilver
#
# README.md ("Docker Compose") gives the full command, with a volume for the embedded store.
#
# deploy/docker-compose.yml builds it for a cluster; tests/compose.rs checks that the two, the
# HAProxy configuration and deploy/cluster agree on names and ports.

# The toolchain the repository is built and tested with (at least `rust-version` of Cargo.toml),
# on the Debian release of the runtime stage, so that the binary finds the glibc it was linked to.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# .dockerignore lets in only the manifests, the lock file and the sources.
COPY . .
# The registry and the target directory live in BuildKit caches: a rebuild after a source change
# compiles only the workspace's crates. The cache is not part of the layer, hence the copy out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p quicksilver \
    && cp target/release/quicksilver /usr/local/bin/quicksilver

FROM debian:bookworm-slim
# ca-certificates: for NATS over TLS and for exporting traces to an HTTPS collector.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric identity (the value distroless images use), so that `runAsNonRoot` policies can
# verify it without reading /etc/passwd, and the data directory it alone may write.
RUN groupadd --system --gid 65532 quicksilver \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/quicksilver \
        --no-create-home --shell /usr/sbin/nologin quicksilver \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/quicksilver
COPY --from=build /usr/local/bin/quicksilver /usr/local/bin/quicksilver

# The hub listens on loopback by default, which no other container could reach. The embedded
# store (the default transport) keeps its file in the data directory: mount a volume there to keep
# history across container replacements.
ENV MERCURE_ADDR=0.0.0.0:8080 \
    MERCURE_HISTORY_PATH=/var/lib/quicksilver/quicksilver.redb
WORKDIR /var/lib/quicksilver
USER 65532:65532
EXPOSE 8080
# Liveness only (readiness, /readyz, is the load balancer's business: an unready node must keep
# its open streams, not be restarted). The image has no curl: bash, which Debian always ships,
# speaks enough HTTP with its /dev/tcp redirection and only builtins, so no process is left behind.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${MERCURE_ADDR##*:} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == *' 200 '* ]]"]
# The hub drains its streams on SIGTERM (drain_timeout, 20 s by default): give it that long before
# SIGKILL, e.g. `docker run --stop-timeout 25` or compose's `stop_grace_period`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/quicksilver"]
