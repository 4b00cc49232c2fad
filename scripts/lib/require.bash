#!/usr/bin/env bash
# Sourced by the README's two commands (scripts/test, scripts/build-image):
# what they need from Debian is installed when they run as root with apt, and
# otherwise named with the exact command to run, before anything else starts.

# require CMD:PACKAGE ...: every CMD on PATH, installing the missing PACKAGEs.
require() {
    local missing=() pair pkg
    for pair in "$@"; do
        pkg=${pair#*:}
        if ! command -v "${pair%%:*}" >/dev/null 2>&1 && [[ " ${missing[*]} " != *" $pkg "* ]]; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "${0##*/}: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "${0##*/}: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

# cargo-nextest runs the Rust tests; crates.io is the one place it comes from.
require_nextest() {
    cargo nextest --version >/dev/null 2>&1 && return 0
    echo "${0##*/}: installing cargo-nextest (cargo install --locked cargo-nextest)" >&2
    cargo install --locked --quiet cargo-nextest
}
