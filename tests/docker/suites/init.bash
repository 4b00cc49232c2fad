#!/usr/bin/env bash
# shellcheck disable=SC2154,SC2034,SC2016
# SC2154/SC2034: variables tests/docker/run defines and reads (label, image,
# cmd, out, rc). SC2016: single-quoted scripts expand inside the container.
# The init (issue 11): hermes stays PID 1, s6-svscan is its child, the main
# program owns stdout and the terminal.

# With a CMD the init writes nothing: stdout is the program's, stderr empty.
# docker run without -t keeps the two streams apart, so each is captured alone.
test_cmd_owns_output() {
    local o e r
    o=$(timeout -k 5 60 docker run --rm --label "$label" "$image" bash -c 'echo ok' 2>/tmp/hermes-init-err.$$)
    r=$?
    e=$(cat /tmp/hermes-init-err.$$)
    rm -f /tmp/hermes-init-err.$$
    cmd="docker run --rm $image bash -c 'echo ok'"
    out="stdout: [$o]"$'\n'"stderr: [$e]"
    rc=$r
    expect_rc 0 || return 1
    [ "$o" = ok ] || { report "stdout is not exactly 'ok'"; return 1; }
    [ -z "$e" ] || { report "stderr is not empty"; return 1; }
    # The boot lines are still in the boot log, written by the reconciler
    # that runs beside a program CMD (which does not wait for it).
    run_fg -- sh -c 'log=/opt/data/logs/container-boot.log; i=0
        until grep -q "reconcile: done" "$log" 2>/dev/null || [ "$i" -ge 200 ]; do sleep 0.1; i=$((i + 1)); done
        cat "$log"'
    expect_out 'reconcile: done' && expect_out 'init: stop signals blocked at [0-9]+ ns' || return 1
    # HERMES_VERBOSE=1 shows them, on stderr only.
    o=$(timeout -k 5 60 docker run --rm --label "$label" -e HERMES_VERBOSE=1 "$image" bash -c 'echo ok' 2>/dev/null)
    out=$o
    [ "$o" = ok ] || { report "HERMES_VERBOSE=1: stdout is not exactly 'ok'"; return 1; }
    # A hermes command's JSON goes straight to a parser.
    capture sh -c "timeout -k 5 60 docker run --rm --label $label $image hermes status --json | jq -e '.manager.kind'"
    expect_rc 0 && expect_out '^"s6"$'
}

# Server mode: the boot lines go to stderr (docker logs), none to stdout.
test_server_mode_boot_lines_on_stderr() {
    local c
    c=$(name serverlog)
    start_booted "$c" -- || return 1
    wait_until 10 "the server-mode line on stderr" sh -c "docker logs $c 2>&1 >/dev/null | grep -q 'server mode'" || return 1
    [ -z "$(docker logs "$c" 2>/dev/null)" ] || { out=$(docker logs "$c" 2>/dev/null); report "server mode wrote to stdout"; return 1; }
    wait_until 10 "the reconcile summary on stderr" sh -c "docker logs $c 2>&1 >/dev/null | grep -q 'reconcile: done'"
}

# hermes is PID 1, s6-svscan its child as the service user with every
# s6-supervise as its child, and the s6 backend is found without /proc/1/comm.
test_init_is_pid1_and_svscan_its_child() {
    local c
    c=$(name pid1)
    start_booted "$c" -- || return 1
    as_root sh -c '
        cat /proc/1/comm
        for p in /proc/[0-9]*; do
            case "$(cat "$p/comm" 2>/dev/null)" in
                s6-svscan) echo "svscan ppid $(awk "/^PPid:/ { print \$2 }" "$p/status") uid $(awk "/^Uid:/ { print \$2 }" "$p/status")"; s=${p#/proc/} ;;
            esac
        done
        for p in /proc/[0-9]*; do
            [ "$(cat "$p/comm" 2>/dev/null)" = s6-supervise ] || continue
            [ "$(awk "/^PPid:/ { print \$2 }" "$p/status")" = "$s" ] || echo "s6-supervise ${p#/proc/} is not a child of s6-svscan"
        done'
    expect_out '^hermes$' && expect_out '^svscan ppid 1 uid 10000$' && expect_no_out 'not a child' || return 1
    as_hermes hermes status --json
    expect_rc 0 || return 1
    capture jq -r '.manager.reason' <<<"$out"
    # /run/service, or the volume's when /run is on FUSE (place.rs).
    expect_out 'a supervisor is reading (/run/service|/opt/data/\.hermes-run/[^/]+/service)/\.s6-svscan/control'
}

# s6-svscan killed: the container stops (main program first) with exit code
# 1 and one line saying why, instead of going on unsupervised.
test_svscan_death_stops_container() {
    local c mode
    for mode in server cmd; do
        c=$(name svdeath)
        if [ "$mode" = server ]; then
            start "$c" -- || return 1
        else
            start "$c" -- sleep infinity || return 1
        fi
        wait_booted || return 1
        # Detached: the stop that follows ends this exec's shell too.
        capture docker exec -d -u hermes "$c" sh -c 'for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = s6-svscan ] && kill -9 "${p#/proc/}"; done; true'
        expect_rc 0 || return 1
        wait_until 10 "the $mode container to exit" sh -c "[ \"\$(docker inspect -f '{{.State.Running}}' $c)\" = false ]" || return 1
        capture docker inspect -f '{{.State.ExitCode}}' "$c"
        expect_out '^1$' || return 1
        capture docker logs "$c"
        expect_out 's6-svscan \(pid [0-9]+\) ended on its own \(killed by SIGKILL\).*exit code 1' || return 1
    done
}

# docker logs (issue 14): every gateway and dashboard line carries a
# timestamp and its profile or service; a kill -9 gets its "ended" line.
test_docker_logs_lines_name_their_source() {
    local c stamp='^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}  '
    c=$(name dlogs)
    start_booted "$c" -e HERMES_DASHBOARD=1 -- || return 1
    create_profile coder --no-alias || return 1
    as_hermes hermes -p coder gateway start
    expect_rc 0 || return 1
    as_hermes sh -c 'kill -9 "$(cat /opt/data/profiles/coder/gateway.pid)"'
    expect_rc 0 || return 1
    wait_until 20 "the ended line in docker logs" sh -c "docker logs $c 2>&1 | grep -q \"hermes: gateway 'coder' ended with signal 9\"" || return 1
    capture docker logs "$c"
    expect_out "${stamp}hermes-gateway\[coder\]: profile coder serving on" || return 1
    expect_out "${stamp}hermes: gateway 'coder' ended with signal 9: killed by signal 9 from outside" || return 1
    expect_out "${stamp}hermes dashboard: serving" || return 1
    # No gateway or dashboard line without its timestamp.
    expect_no_out '^hermes-gateway|^hermes dashboard|^hermes: gateway' || return 1
}

# A program CMD that ends before boot reconciliation does still leaves that
# boot's lines in the boot log, the init's notes first: the init ends the
# reconciler, which logs what it did and why it stopped before it exits.
test_short_cmd_keeps_boot_lines() {
    local vol n
    vol=$(volume)
    for n in 1 2 3; do
        run_fg -v "$vol:/opt/data" -- true
        expect_rc 0 || return 1
    done
    run_fg -v "$vol:/opt/data" --entrypoint cat -- /opt/data/logs/container-boot.log
    expect_rc 0 || return 1
    n=$(grep -c 'init: stop signals blocked at' <<<"$out")
    [ "$n" = 3 ] || { report "the init's notes of $n boots of 3 in the boot log"; return 1; }
    n=$(grep -Ec 'reconcile: (done in|stopped by SIGTERM)' <<<"$out")
    [ "$n" = 3 ] || { report "how $n reconciles of 3 ended in the boot log"; return 1; }
}

all_tests+=(
    test_docker_logs_lines_name_their_source
    test_short_cmd_keeps_boot_lines
    test_cmd_owns_output
    test_server_mode_boot_lines_on_stderr
    test_init_is_pid1_and_svscan_its_child
    test_svscan_death_stops_container
)
