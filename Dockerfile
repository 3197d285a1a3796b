# syntax=docker/dockerfile:1
# raygate image: the release binary on distroless/cc (glibc + libgcc, no shell),
# running as the distroless `nonroot` user (65532), as deploy/base expects.
#
#   docker build -t raygate:0.1.0 .
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.
# scripts/image.sh builds the same image without Docker, for the test cluster: docs/IMAGE.md.

FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Install the toolchain pinned in rust-toolchain.toml (a no-op when the image
# already has it) in its own layer, so source changes do not repeat it.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && cargo --version

COPY . .
# target/ and the cargo registry live in cache mounts, so the binary is copied
# out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/raygate /raygate

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="raygate" \
      org.opencontainers.image.description="Admission webhook that enforces a Ray-on-Kubernetes platform policy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /raygate /raygate
USER 65532:65532
# 8443: HTTPS admission webhook and probes; 9090: plain-HTTP Prometheus /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/raygate", "serve"]
