# The `scores` service as a container image: `docker compose up --build` (compose.yaml) runs it,
# or `docker build -t scores . && docker run -p 127.0.0.1:5001:8000 scores`.
#
# Two stages: the build on the official Rust image, its dependencies compiled in a layer of
# their own (rebuilt only when a Cargo.toml or Cargo.lock changes), and a small runtime on
# Debian slim that runs the one binary as an unprivileged user.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# No line tables (the workspace's release profile keeps them for profiling): the image's binary
# is 18 MB without them, 83 MB with.
ENV CARGO_PROFILE_RELEASE_DEBUG=false

# Dependencies: the workspace's manifests with empty targets in place of the sources, built
# once. Every target a manifest declares by name ([[bench]], [[test]]) gets an empty file too,
# since cargo checks that they exist.
COPY Cargo.toml Cargo.lock ./
COPY scores-core/Cargo.toml scores-core/
COPY scores-sse/Cargo.toml scores-sse/
COPY scores-journal/Cargo.toml scores-journal/
COPY scores-pipeline/Cargo.toml scores-pipeline/
COPY scores-http/Cargo.toml scores-http/
COPY scores-cli/Cargo.toml scores-cli/
RUN set -eu; \
    for manifest in */Cargo.toml; do \
        crate=${manifest%/Cargo.toml}; \
        mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
        awk -v crate="$crate" ' \
            /^\[\[bench\]\]/ { kind = "benches"; next } \
            /^\[\[test\]\]/ { kind = "tests"; next } \
            /^\[/ { kind = "" } \
            kind != "" && /^name *=/ { gsub(/[" ]/, ""); sub(/^name=/, ""); print crate "/" kind "/" $0 ".rs"; kind = "" } \
        ' "$manifest"; \
    done | while read -r stub; do mkdir -p "${stub%/*}" && echo 'fn main() {}' > "$stub"; done; \
    echo 'fn main() {}' > scores-cli/src/main.rs; \
    cargo build --release --locked -p scores-cli

# The sources. Their times are older than the empty targets' build: touch them so that cargo
# rebuilds the workspace's crates (and only those).
COPY . .
RUN find scores-* -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p scores-cli \
    && cp target/release/scores /usr/local/bin/scores

FROM debian:bookworm-slim
# The journal and checkpoints live in /var/lib/scores, a volume, owned by the `scores` user.
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/scores --shell /usr/sbin/nologin scores \
    && mkdir -p /var/lib/scores \
    && chown scores:scores /var/lib/scores
COPY --from=build /usr/local/bin/scores /usr/local/bin/scores
USER scores
WORKDIR /var/lib/scores
VOLUME /var/lib/scores
# Inside a container the service listens on every address; the CLI's own default is loopback.
# On SIGTERM, /readyz fails for 3 s while requests are still served, so that a load balancer
# (HAProxy in compose.cluster.yaml, checking every second) stops sending any before it closes.
ENV SCORES_LISTEN=0.0.0.0:8000 \
    SCORES_DATA_DIR=/var/lib/scores \
    SCORES_SHUTDOWN_DELAY=3s
EXPOSE 8000
# `scores probe` asks the service's own /healthz: the image needs no HTTP client.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["scores", "probe"]
# SIGTERM (what `docker stop` sends) is the graceful shutdown: the journal synced, the HTTP
# server drained, exit 0. The binary handles it itself as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["scores"]
CMD ["serve"]
