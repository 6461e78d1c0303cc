# interlock's image, for registries (docs/deployment.md):
#
#   docker build -t registry.example/interlock:0.1.0 --build-arg INTERLOCK_GIT_COMMIT=$(git rev-parse --short HEAD) .
#   docker push registry.example/interlock:0.1.0
#
# The image runs the core (`run -c FILE`), the extensions (`extension`, a TOML's `Image`) and the
# statistics agent (`agent`): its ENTRYPOINT is the interlock binary. The core checks every proxy
# config with the real binaries before it rolls it out (`nginx -t`, `haproxy -c`), so the runtime
# carries Debian's nginx-light, its stream module and HAProxy, and the user `nginx` that
# Interlock's configs name.
#
# The Swarm lab's local/interlock:lab has the same layout (deploy/lab/swarm-lab.sh: Debian
# bookworm + nginx-light, libnginx-mod-stream, haproxy, ca-certificates, the user nginx, the
# binary at /usr/local/bin/interlock as ENTRYPOINT), built there from a debootstrap rootfs and the
# binary, since the lab cannot pull these base images; tests/lab/stack.rs checks the two agree.
#
# Reproducible: the toolchain is the project's (rustc 1.95.0) and the base images are named by
# version (pin them by digest for bit-for-bit rebuilds: --build-arg
# RUST_IMAGE=rust:1.95.0-slim-bookworm@sha256:…), dependencies come from Cargo.lock (--locked),
# build paths are remapped out of the binary, and DEBIAN_SNAPSHOT (a snapshot.debian.org time,
# e.g. 20260401T000000Z) fixes the Debian packages. Works with BuildKit and the legacy builder.

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
# Empty: the binary says "(rust)" where a build from git says its commit.
ARG INTERLOCK_GIT_COMMIT=
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY reconcilers reconcilers
COPY src src
# The same source tree gives the same binary wherever it is built: no absolute build paths in it.
RUN set -eu; \
    if [ -z "$INTERLOCK_GIT_COMMIT" ]; then unset INTERLOCK_GIT_COMMIT; fi; \
    export CARGO_INCREMENTAL=0 \
      RUSTFLAGS="--remap-path-prefix=/src=/interlock --remap-path-prefix=${CARGO_HOME:-/usr/local/cargo}=/cargo"; \
    cargo build --release --locked --bin interlock; \
    install -D -m 0755 target/release/interlock /out/interlock

FROM ${RUNTIME_IMAGE}
ARG DEBIAN_SNAPSHOT=
# Mirrors deploy/lab/swarm-lab.sh's slim_proxy_rootfs: the stream module is installed but not
# enabled by default (a config with a stream {} block loads it), nginx logs to the container's
# output, /run/haproxy exists for HAProxy, and the user nginx exists.
RUN set -eu; \
    if [ -n "$DEBIAN_SNAPSHOT" ]; then \
      sed -i -e "s|http://deb.debian.org/debian-security|http://snapshot.debian.org/archive/debian-security/$DEBIAN_SNAPSHOT|" \
        -e "s|http://deb.debian.org/debian|http://snapshot.debian.org/archive/debian/$DEBIAN_SNAPSHOT|" \
        /etc/apt/sources.list.d/debian.sources; \
      echo 'Acquire::Check-Valid-Until "false";' >/etc/apt/apt.conf.d/99snapshot; \
    fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nginx-light libnginx-mod-stream haproxy ca-certificates; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log; \
    rm -f /etc/nginx/modules-enabled/50-mod-stream.conf; \
    mkdir -p /var/log/nginx /run/haproxy /var/lib/nginx; \
    ln -sf /dev/stdout /var/log/nginx/access.log; \
    ln -sf /dev/stderr /var/log/nginx/error.log; \
    chown haproxy:haproxy /run/haproxy; \
    getent passwd nginx >/dev/null || \
      useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx
COPY --from=builder /out/interlock /usr/local/bin/interlock
ENTRYPOINT ["/usr/local/bin/interlock"]
