#!/usr/bin/env bash
# shellcheck disable=SC2154
# The image's HEALTHCHECK (`hermes health`) as Docker sees it, and issue 17's
# first finding: nothing the service user writes is on root's PATH.
# SC2016: single-quoted scripts are meant to expand inside the container.
# shellcheck disable=SC2016

# The health status Docker reports for the test's container.
health_is() {
    capture docker inspect -f '{{.State.Health.Status}}' "$container"
    [ "$rc" = 0 ] && [ "$out" = "$1" ]
}

# The last check's output, through a JSON parser (Go templates cannot subtract).
health_log_tail() {
    capture sh -c 'docker inspect -f "{{json .State.Health.Log}}" "$1" | python3 -c "import json, sys; log = json.load(sys.stdin); print(log[-1][\"ExitCode\"], log[-1][\"Output\"].strip())"' sh "$container"
}

# The last check's exit code and output match $1.
last_check_matches() {
    health_log_tail
    [ "$rc" = 0 ] && grep -Eq -- "$1" <<<"$out"
}

test_health_check() {
    local c config
    capture docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$image"
    expect_out 'hermes","health"\]$' || return 1
    c=$(name health)
    # The image's check, every 300 ms and unhealthy at the first failure.
    start_booted "$c" --health-interval 300ms --health-retries 1 --health-timeout 10s --health-start-period 0s -- || return 1
    wait_until 20 "healthy with no gateway" health_is healthy || return 1

    create_profile p || return 1
    as_root hermes -p p gateway start
    expect_rc 0 || return 1
    # Healthy, because of p now: the check counted it.
    wait_until 10 "a check that counted gateway p" sh -c '
        docker inspect -f "{{json .State.Health.Log}}" "$1" | grep -q "1 gateway up and answering as itself"' sh "$c" || return 1
    health_is healthy || { report "not healthy with p up"; return 1; }

    # A config the gateway refuses: exit 78, parked for good while wanted running.
    as_hermes cat /opt/data/profiles/p/config.yaml
    config=$out
    as_hermes sh -c 'printf "gateway: [\n" > /opt/data/profiles/p/config.yaml'
    as_root hermes -p p gateway restart
    [ "$rc" != 0 ] || { report "restart with a broken config succeeded"; return 1; }
    wait_until 10 "unhealthy with p parked" health_is unhealthy || return 1
    # A check may have run between the edit and the park (then: port unknown).
    wait_until 10 "a check that saw p parked" last_check_matches "^1 gateway 'p': is parked" || return 1
    health_log_tail
    expect_out 'hermes -p p gateway start' || return 1
    # Liveness looks only at the supervision tree.
    as_root hermes health --live
    expect_rc 0 || return 1

    as_hermes sh -c 'printf "%s\n" "$1" > /opt/data/profiles/p/config.yaml' sh "$config"
    as_root hermes -p p gateway start
    expect_rc 0 || return 1
    wait_until 10 "healthy again after gateway start" health_is healthy || return 1
}

# The check runs as the container's user: with --user, as the service user.
test_health_check_as_user() {
    local c
    c=$(name healthuser)
    start "$c" --user 10000:10000 --health-interval 300ms --health-retries 1 --health-start-period 0s -- || return 1
    wait_until 20 "healthy as uid 10000" health_is healthy || return 1
    capture docker exec "$c" hermes health --json
    expect_rc 0 && expect_out '"ok": true' || return 1
}

# Every directory on root's PATH, and each of its parents, is unwritable by
# the service user: the PATH of a root `docker exec` shell, and that of every
# process of the init running as root (their environ is readable by root).
test_root_path_not_writable_by_service_user() {
    local c dirs
    c=$(name rootpath)
    start_booted "$c" -- || return 1
    as_root sh -c '
        echo "$PATH"
        for p in /proc/[0-9]*; do
            [ "$(awk "/^Uid:/ { print \$2 }" "$p/status" 2>/dev/null)" = 0 ] || continue
            tr "\0" "\n" < "$p/environ" 2>/dev/null | sed -n "s/^PATH=//p"
        done'
    expect_rc 0 || return 1
    dirs=$(tr ':' '\n' <<<"$out" | sort -u | grep -v '^$')
    [ -n "$dirs" ] || { report "no PATH found"; return 1; }
    # shellcheck disable=SC2086
    capture docker exec -u 10000:10000 "$c" sh -c '
        for d; do
            case $d in
                /*) ;;
                *) echo "relative entry on root PATH: $d"; continue ;;
            esac
            p=$d
            while :; do
                if [ -w "$p" ] || { [ ! -e "$p" ] && [ -w "$(dirname "$p")" ]; }; then
                    echo "uid 10000 can write $p (on root PATH as $d)"
                fi
                [ "$p" = / ] && break
                p=$(dirname "$p")
            done
        done' sh $dirs
    expect_rc 0 || return 1
    [ -z "$out" ] || report "directories on root's PATH writable by the service user"
}

# The reproduction: a `ps` and an alias written by the service user are
# never run as root; the profile's alias still works for root and hermes.
test_planted_commands_not_run_as_root() {
    local c
    c=$(name planted)
    start_booted "$c" -- || return 1
    create_profile coder || return 1
    as_hermes sh -c '
        mkdir -p /opt/data/.local/bin
        for n in ps coder; do
            printf "#!/bin/sh\nid -u > /tmp/planted-%s\n" "$n" > "/opt/data/.local/bin/$n"
            chmod 755 "/opt/data/.local/bin/$n"
        done'
    expect_rc 0 || return 1
    as_root ps
    as_root sh -c 'ps; coder gateway status; true'
    capture docker restart -t 5 "$c"
    wait_until 20 "second boot" docker exec "$c" sh -c '[ "$(grep -c profile=default /opt/data/logs/container-boot.log)" -ge 2 ]' || return 1
    # The init writes the aliases beside the boot, not before it.
    wait_until 10 "the coder alias" docker exec "$c" test -L /run/hermes-aliases/coder || return 1
    as_root ps
    as_root coder gateway status
    as_root sh -c 'cat /tmp/planted-* 2>/dev/null'
    [ -z "$out" ] || { report "root ran a command the service user planted (uid $out)"; return 1; }

    # The alias after a boot: a root link to hermes, for root and the service user.
    as_root sh -c 'ls -l /run/hermes-aliases/coder'
    expect_out '^l.* root +root .*coder -> /usr/local/bin/hermes$' || return 1
    as_root coder gateway status
    expect_rc 0 && expect_out 'coder' || return 1
    as_hermes coder gateway status
    expect_rc 0 && expect_out 'coder' || return 1
}

all_tests+=(
    test_health_check
    test_health_check_as_user
    test_root_path_not_writable_by_service_user
    test_planted_commands_not_run_as_root
)
