# syntax=docker/dockerfile:1
# The Atrium image: the one `atrium` binary (controller, gateway and tools) on a distroless,
# non-root base. Reproducible: pinned toolchain and base tags, `--locked` dependencies, no
# incremental state, a fixed SOURCE_DATE_EPOCH. Build: `docker build -t atrium/atrium:dev .`
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# cmake builds the bundled zlib-ng and zstd that pingora links.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV CARGO_INCREMENTAL=0 SOURCE_DATE_EPOCH=0 ATRIUM_GIT_COMMIT=image
RUN cargo build --release --locked --bin atrium \
 && install -D -m 0555 target/release/atrium /out/atrium

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/atrium /usr/local/bin/atrium
USER 65532:65532
EXPOSE 8000 8080 9000
ENTRYPOINT ["/usr/local/bin/atrium"]
CMD ["--help"]
