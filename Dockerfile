# syntax=docker/dockerfile:1
# The operator image, for users with Docker (or buildah/podman). It builds the
# same thing as scripts/image.sh, which needs no container engine and is what
# the tests run: one layer with /usr/local/bin/profefe-operator, the shared
# libraries it loads taken from the Debian packages pinned in
# scripts/image.lock, the CA bundle, zoneinfo and a passwd with user 65532.
# No shell, no package manager. Both lay out the root folder with
# scripts/image-rootfs.sh. (scripts/image.sh is reproducible to the digest;
# a Docker build also carries Docker's own metadata, so its digest differs.)
#
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t profefe-operator .
#   buildah build --storage-driver vfs --isolation chroot -t profefe-operator .

FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config binutils python3 \
      libcurl4-openssl-dev libjson-c-dev libyaml-dev libssl-dev zlib1g-dev
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPPOP_TESTS=OFF -DPPOP_WERROR=ON \
      -DCMAKE_C_FLAGS=-ffile-prefix-map=/src=. \
    && cmake --build /build \
    && cmake --install /build --prefix /out --strip \
    && scripts/image-rootfs.sh --out /rootfs --debs /debs --lock scripts/image.lock --allow-unpinned \
      --binary /out/bin/profefe-operator:/usr/local/bin/profefe-operator \
    && chown -R 65532:65532 /rootfs/home/nonroot /rootfs/var/spool/profefe-operator

FROM scratch
COPY --from=build /rootfs/ /
ARG VERSION=v0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title=profefe-operator \
      org.opencontainers.image.description="Continuous profiling for Go services on Kubernetes" \
      org.opencontainers.image.source=https://github.com/profefe/profefe-operator \
      org.opencontainers.image.licenses=Apache-2.0 \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/profefe-operator"]
