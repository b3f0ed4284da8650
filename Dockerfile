# syntax=docker/dockerfile:1
# Multi-stage build of profefe-operator and kubectl-profefe.
# No container engine runs on the development machines, so this file is not
# built in CI; it follows the same steps as scripts/test.sh's C build.

FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libcurl4-openssl-dev libjson-c-dev libyaml-dev libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPPOP_TESTS=OFF -DPPOP_WERROR=ON \
    && cmake --build /build \
    && cmake --install /build --prefix /out --strip

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcurl4 libjson-c5 libyaml-0-2 libssl3 zlib1g ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/profefe-operator"]
