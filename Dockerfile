# syntax=docker/dockerfile:1
# The p2pvps server and its dashboard. Built the way CI builds them: `cargo xtask frontend` (Trunk, the
# wasm-bindgen CLI and npm's wasm-opt, all pinned by the repository) and `cargo build --release --locked`.
# `cargo xtask deploy-check` lints this file and validates compose.yaml without a Docker engine.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY . .
RUN cargo xtask frontend \
 && cargo build --release --locked -p p2pvps-server --bin p2pvps

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/p2pvps --create-home --shell /usr/sbin/nologin p2pvps
COPY --from=build /src/target/release/p2pvps /usr/local/bin/p2pvps
COPY --from=build /src/target/dist /usr/share/p2pvps/web
# Host keys, the generated secret key and certificates live in the data volume.
ENV P2PVPS_WEB_DIR=/usr/share/p2pvps/web \
    P2PVPS_DATA_DIR=/var/lib/p2pvps \
    P2PVPS_HTTP=0.0.0.0:8080 \
    P2PVPS_SSH=0.0.0.0:2222 \
    P2PVPS_LOG_FORMAT=json
VOLUME ["/var/lib/p2pvps"]
USER p2pvps
EXPOSE 8080 2222
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["p2pvps"]
CMD ["serve"]
