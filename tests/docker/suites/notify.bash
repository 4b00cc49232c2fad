#!/usr/bin/env bash
# shellcheck disable=SC2154
# SC2016: single-quoted scripts expand in the shell they are given to.
# shellcheck disable=SC2016
# Notifications in the image (issue 16): the CA bundle https targets are
# checked against, and the init queueing "stopping" on `docker stop`.

test_notify_ca_bundle() {
    run_fg --entrypoint /bin/sh -- -c 'test -s /etc/ssl/certs/ca-certificates.crt && echo present'
    expect_out '^present$' || return 1
}

test_notify_stopping_from_the_init() {
    local c
    c=$(name notify)
    start_booted "$c" -- || return 1
    create_profile p || return 1
    # A target nobody listens on: the event stays in the outbox, where it is read below.
    as_hermes sh -c 'printf "notify:\n  targets:\n    - url: http://127.0.0.1:9/x\n      format: slack\n" >> /opt/data/config.yaml'
    expect_rc 0 || return 1
    as_root hermes -p p gateway start
    expect_rc 0 || return 1
    capture docker stop -t 20 "$c"
    expect_rc 0 || return 1
    # docker cp to stdout is a tar stream.
    capture sh -c 'docker cp "$1:/opt/data/notify/outbox.jsonl" - | tar -xO' sh "$c"
    expect_out '"kind":"stopping".*"gateways":\["p"\]' || return 1
}

all_tests+=(test_notify_ca_bundle test_notify_stopping_from_the_init)
