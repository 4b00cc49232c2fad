# The hermes image: s6 supervises the dashboard and one gateway per profile;
# `hermes container init` is the ENTRYPOINT and stays PID 1, with s6-svscan
# as its child (see ARCHITECTURE.md). Nothing is downloaded but Debian packages.
#
# Users (with a registry; BuildKit builds only the stages the target needs):
#   docker build -t hermes .
# Without a registry, scripts/build-image makes the base image with
# debootstrap and builds the `prebuilt` target with a binary passed in as
# prebuilt/hermes in the build context; the runtime stage is the same.

ARG BASE_IMAGE=debian:trixie-slim
ARG RUST_IMAGE=rust:1-slim-trixie

FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/sh", "-eu", "-c"]
# s6 and execline come from Debian, and ca-certificates (the CA bundle
# https notification targets are checked against); a base that already has
# them (the debootstrap one) needs no package index. Versions are the
# release's own. The profile.d line is single-quoted to expand in the shells
# it is for.
# hadolint ignore=DL3008,SC2016
RUN if ! command -v s6-svscan >/dev/null || ! command -v execlineb >/dev/null \
        || [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update; \
        apt-get install -y --no-install-recommends s6 execline ca-certificates; \
        apt-get clean; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --gid 10000 hermes; \
    useradd --uid 10000 --gid 10000 --home-dir /opt/data --no-create-home --shell /bin/sh hermes; \
    mkdir -p /opt/data /run/service /run/hermes; \
    chown 10000:10000 /opt/data /run/service /run/hermes; \
    printf '%s\n' \
        '# Profile aliases of the service user (never on the PATH of root).' \
        'if [ "$(id -u)" != 0 ] && [ -n "${HOME:-}" ]; then PATH="$PATH:$HOME/.local/bin"; fi' \
        >/etc/profile.d/hermes-aliases.sh; \
    printf '. /etc/profile.d/hermes-aliases.sh\n' >>/etc/bash.bashrc
# Nothing the service user can write is on this PATH (root's, and that of
# every `docker exec`): /run/hermes-aliases is root's, and stage 1 fills it
# with one link per profile to hermes (ARCHITECTURE.md, "Profile aliases").
ENV HERMES_HOME=/opt/data \
    HERMES_CONTAINER=1 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/hermes-aliases
VOLUME ["/opt/data"]
WORKDIR /opt/data
ENTRYPOINT ["/usr/local/bin/hermes", "container", "init", "--"]
CMD []
# `hermes health`: the supervisor answers, and every gateway whose
# desired_state is running is up, ready and answers /health as itself (and
# the dashboard when enabled); it costs a few ms. Every 30 s: health matters
# at the pace an orchestrator reacts, not faster. 10 s timeout: its own waits
# are bounded (300 ms probes), but on an unhealthy container it asks every
# slot in turn. 60 s start period: boot reconciles and starts every gateway
# (each start waits up to 10 s for readiness). 3 retries: a gateway killed
# and restarted by s6 (back-off at most 2 s) or being restarted by hand must
# not flip the container. Liveness probes use `hermes health --live`.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/hermes", "health"]

# Tests and scripts/build-image: the runtime with a binary built outside.
FROM runtime AS prebuilt
COPY prebuilt/hermes /usr/local/bin/hermes

# Statically linked, with musl: hermes is PID 1, and a dynamic binary spends
# the time between Docker's exec and its first instruction in the loader,
# where PID 1 drops a `docker stop` (it has no handler yet). And every
# gateway start is an exec of hermes: glibc's start-up asks the CPU about
# itself (cpuid) dozens of times, which a VM traps, while musl's does not
# (ARCHITECTURE.md, "The image's hermes is linked with musl"). musl-tools:
# ring's C and assembly are compiled for musl.
FROM ${RUST_IMAGE} AS build
SHELL ["/bin/sh", "-eu", "-c"]
# hadolint ignore=DL3008
RUN apt-get update; \
    apt-get install -y --no-install-recommends musl-tools; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target "$(uname -m)-unknown-linux-musl" -p hermes-cli; \
    cp "target/$(uname -m)-unknown-linux-musl/release/hermes" /hermes

FROM runtime
COPY --from=build /hermes /usr/local/bin/hermes
