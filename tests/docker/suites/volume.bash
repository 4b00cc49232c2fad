#!/usr/bin/env bash
# The volume: one container per volume (issue 11 part 2), non-root on a
# read-only root file system (issue 11 part 4), root never following a link
# the service user planted (issue 17 high 2), and the ownership repair
# leaving mounts inside the volume alone (issue 17 medium 4).
# SC2034: container and cmd are the run script's globals, read by report.
# shellcheck disable=SC2154,SC2016,SC2015,SC2034

# Every file of the volume but the logs (a running gateway appends to its
# log), with owner, mode and content hash: what a second container must not
# change.
volume_fingerprint() {
    capture docker exec "$1" sh -c 'cd /opt/data && find . -path ./logs -prune -o -printf "%p %u:%g %m %y\n" | sort &&
        find . -path ./logs -prune -o -type f -exec sha256sum {} + | sort -k 2'
}

test_volume_one_owner() {
    local vol c1 c2 before host1
    vol=$(volume)
    c1=$(name owner1)
    # A main program, for gateways_are's check of main.pid.
    start "$c1" -v "$vol:/opt/data" -- sleep infinity || return 1
    wait_booted || return 1
    as_root hermes profile create coder
    expect_rc 0 || return 1
    as_hermes hermes -p coder gateway start
    expect_rc 0 || return 1
    host1=$(docker exec "$c1" cat /proc/sys/kernel/hostname)
    volume_fingerprint "$c1"
    before=$out

    # A second server on the same volume: refused at once, naming the first.
    run_fg -v "$vol:/opt/data" --
    expect_rc 78 && expect_out "/opt/data is in use by another hermes \\(host $host1, container $host1" || return 1
    [ "$(grep -c . <<<"$out")" = 1 ] || { report "want one line"; return 1; }
    # With a CMD too; and a read-only one-shot command still works.
    run_fg -v "$vol:/opt/data" -- sh -c 'echo should not run'
    expect_rc 78 && expect_no_out 'should not run' || return 1
    run_fg -v "$vol:/opt/data" -- hermes profile list
    expect_rc 0 && expect_out coder || return 1
    run_fg -v "$vol:/opt/data" -- status
    expect_rc 0 || return 1
    run_fg -v "$vol:/opt/data" --user 10000:10000 -- gateway status
    expect_rc 0 || return 1

    volume_fingerprint "$c1"
    [ "$out" = "$before" ] || {
        out=$(diff <(printf '%s\n' "$before") <(printf '%s\n' "$out"))
        report "the refused containers changed the first one's volume"
        return 1
    }
    gateways_are coder=up || { report "the first container's gateway is no longer up"; return 1; }
    # Up and healthy, never restarted, still wanted, no exit recorded (the
    # table's columns: PROFILE STATE HEALTH PID PORT UPTIME RESTARTS DESIRED LAST EXIT).
    as_hermes hermes -p coder gateway status
    expect_out '^coder +up +ok +[0-9]+ +[0-9]+ +[^ ]+ +0 +running +-$' || return 1

    # SIGKILL: nothing stale is left; a new container takes the volume at once.
    capture docker kill -s KILL "$c1"
    c2=$(name owner2)
    start_booted "$c2" -v "$vol:/opt/data" -- || return 1
    as_hermes cat /opt/data/.hermes.lock
    expect_out "^host $(docker exec "$c2" cat /proc/sys/kernel/hostname), " || return 1
    # Only the init (PID 1) has the lock file open: s6-svscan and everything
    # below it never got the descriptor.
    as_root sh -c 'for fd in /proc/[0-9]*/fd/*; do [ "$(readlink "$fd")" = /opt/data/.hermes.lock ] && echo "${fd%/fd/*}"; done; true'
    expect_out '^/proc/1$' && expect_no_out '^/proc/([02-9]|1[0-9])' || return 1
    wait_until 20 "coder up again" docker exec -u hermes "$c2" sh -c 'hermes -p coder gateway status | grep -q " up "'
}

# One case of the matrix: boot in server mode, a profile started, status as
# root and as hermes through `docker exec`, docker restart, docker stop exit
# 0; and a CMD. Prints a line per failure; returns non-zero on any.
runtime_case() {
    local tag=$1 user=$2
    shift 2
    local c vol
    vol=$(volume)
    c=$(name "rt-$tag")
    container=$c
    start_booted "$c" -v "$vol:/opt/data" "$@" -- || return 1
    as_root hermes profile create p1
    expect_rc 0 || return 1
    as_hermes hermes -p p1 gateway start
    expect_rc 0 || return 1
    # As the container's user (root, or 10000 with --user) and as hermes.
    capture docker exec "$c" hermes status
    expect_rc 0 && expect_out 'Supervisor +s6-svscan on .*: reachable' || return 1
    as_hermes hermes status
    expect_rc 0 && expect_out 'Supervisor +s6-svscan on .*: reachable' || return 1
    if [ "$user" = 10000 ]; then
        # Root without capabilities cannot become the volume's owner: it says so.
        capture docker exec -u root "$c" hermes status
        expect_rc 1 && expect_out 'docker exec -u hermes' || return 1
    fi
    capture docker restart -t 10 "$c"
    expect_rc 0 || return 1
    wait_until 20 "p1 up after restart" docker exec -u hermes "$c" sh -c 'hermes -p p1 gateway status | grep -q " up "' || return 1
    capture docker stop -t 10 "$c"
    capture docker inspect -f '{{.State.ExitCode}}' "$c"
    expect_out '^0$' || return 1
    run_fg -v "$vol:/opt/data" "$@" -- sh -c 'hermes status >/dev/null && echo cmd-ok'
    expect_rc 0 && expect_out '^cmd-ok$'
}

test_volume_runtime_matrix() {
    local started=$SECONDS dir pids=() cases=() i=0 user ro run opts failed=0
    dir=$(mktemp -d)
    for user in root 10000; do
        for ro in rw ro; do
            for run in image tmpfs-exec tmpfs-noexec unwritable; do
                opts=(--security-opt no-new-privileges)
                [ "$user" = 10000 ] && opts+=(--user 10000:10000 --cap-drop ALL)
                [ "$ro" = ro ] && opts+=(--read-only)
                case $run in
                    tmpfs-exec) opts+=(--tmpfs /run:exec) ;;
                    tmpfs-noexec) opts+=(--tmpfs /run) ;;
                    unwritable) opts+=(--tmpfs /run:ro) ;;
                esac
                cases+=("$user-$ro-$run: ${opts[*]}")
                (runtime_case "$user-$ro-$run" "$user" "${opts[@]}" >"$dir/$i" 2>&1) &
                pids+=($!)
                i=$((i + 1))
                # Four at a time: the machine is shared.
                if [ "${#pids[@]}" -ge 4 ]; then
                    wait "${pids[0]}" || echo "FAIL" >>"$dir/$((i - ${#pids[@]}))"
                    pids=("${pids[@]:1}")
                fi
            done
        done
    done
    local first=$((i - ${#pids[@]}))
    for p in "${pids[@]}"; do
        wait "$p" || echo "FAIL" >>"$dir/$first"
        first=$((first + 1))
    done
    for i in "${!cases[@]}"; do
        if grep -q FAIL "$dir/$i"; then
            echo "case ${cases[$i]}:"
            sed 's/^/  /' "$dir/$i"
            failed=1
        fi
    done
    rm -rf "$dir"
    echo "runtime matrix: ${#cases[@]} cases in $((SECONDS - started)) s"
    # Root without CAP_SETUID cannot hand the tree over: one clear line.
    run_fg --cap-drop ALL -- true
    expect_rc 78 && expect_out 'without CAP_SETUID .*--user 10000:10000' || failed=1
    [ "$failed" = 0 ]
}

# Issue 17 high 2: with a noexec /run the tree lives in
# /opt/data/.hermes-run/<host>; the service user replaces that with a link to
# a root-owned directory elsewhere. The next boot must not empty, write or
# chown the link's target.
test_volume_run_dir_link_not_followed() {
    local vol other c host
    vol=$(volume)
    other=$(volume)
    c=$(name runlink)
    start_booted "$c" --read-only --tmpfs /run -v "$vol:/opt/data" -v "$other:/mnt/other" -- || return 1
    as_root sh -c 'mkdir -p /mnt/other/service && echo keep > /mnt/other/service/keep && chown -R 0:0 /mnt/other && chmod 755 /mnt/other'
    expect_rc 0 || return 1
    host=$(docker exec "$c" cat /proc/sys/kernel/hostname)
    # .hermes-run is the service user's after any restart (the ownership
    # repair gives it the whole volume); give it now rather than restart twice.
    as_root chown hermes:hermes /opt/data/.hermes-run
    as_hermes sh -c "mv /opt/data/.hermes-run/$host /opt/data/.hermes-run/old && ln -s /mnt/other /opt/data/.hermes-run/$host"
    expect_rc 0 || return 1
    capture docker restart -t 10 "$c"
    wait_until 20 "booted again" docker exec "$c" sh -c 'test "$(grep -c "profile=default " /opt/data/logs/container-boot.log)" -ge 2' || return 1
    as_root sh -c 'ls -lan /mnt/other /mnt/other/service; cat /mnt/other/service/keep'
    expect_out '^keep$' && expect_no_out ' 10000 ' && expect_no_out '\.s6-svscan|notify' || {
        report "root followed the planted link"
        return 1
    }
    as_root sh -c "test -d /opt/data/.hermes-run/$host -a ! -L /opt/data/.hermes-run/$host"
    expect_rc 0 || { report "the link was not replaced by a directory"; return 1; }
    as_hermes hermes status
    expect_out 'Supervisor +s6-svscan on .*: reachable'
}

# Issue 17 medium 4: a host file and a host directory (another owner)
# bind-mounted inside the volume, and a read-only mount: the boot succeeds and
# their ownership is left alone.
test_volume_repair_skips_mounts() {
    local vol host_dir c
    vol=$(volume)
    host_dir=$(mktemp -d)
    mkdir "$host_dir/dir" "$host_dir/ro"
    echo data >"$host_dir/file"
    echo inner >"$host_dir/dir/inner"
    chown -R 4242:4242 "$host_dir"
    c=$(name mounts)
    start "$c" -v "$vol:/opt/data" -v "$host_dir/file:/opt/data/host-file" \
        -v "$host_dir/dir:/opt/data/host-dir" -v "$host_dir/ro:/opt/data/ro-dir:ro" -- || {
        rm -rf "$host_dir"
        return 1
    }
    wait_booted
    local booted=$?
    local owners
    owners=$(stat -c '%n %u:%g' "$host_dir/file" "$host_dir/dir" "$host_dir/dir/inner" "$host_dir/ro")
    rm -rf "$host_dir"
    [ "$booted" = 0 ] || return 1
    out=$owners
    cmd="stat on the host"
    expect_no_out ' 10000:' || { report "host files were given to the service user"; return 1; }
    [ "$(grep -c ' 4242:4242$' <<<"$owners")" = 4 ] || { report "host ownership changed"; return 1; }
    capture docker logs "$c"
    expect_out 'left /opt/data/host-file as it is: it is mounted from elsewhere'
}

# Issue 17 low: a link at /opt/data/logs says how to repair it; a temp file
# left by a killed write is removed at boot.
test_volume_logs_link_and_stale_temp() {
    local vol
    vol=$(volume)
    # Planted without the init: a tree running beside it has loggers that
    # make logs/ again between the rm and the ln.
    run_fg -v "$vol:/opt/data" --user 10000:10000 --entrypoint sh -- -c 'mkdir -p /opt/data/profiles &&
        echo x > /opt/data/.gateway_state.json.tmp.99999 && rm -rf /opt/data/logs && ln -s /tmp /opt/data/logs'
    expect_rc 0 || return 1
    run_fg -v "$vol:/opt/data" -- true
    expect_rc 78 && expect_out 'remove the link .*--entrypoint rm .* /opt/data/logs' || return 1
    run_fg -v "$vol:/opt/data" --user 10000:10000 --entrypoint rm -- /opt/data/logs
    # With a CMD the note is only in the boot log (the reconciler beside
    # the CMD writes it).
    run_fg -v "$vol:/opt/data" -- sh -c 'log=/opt/data/logs/container-boot.log; i=0
        until grep -q "tmp.99999, left by" "$log" 2>/dev/null || [ "$i" -ge 200 ]; do sleep 0.1; i=$((i + 1)); done
        ls -a /opt/data; cat "$log"'
    expect_rc 0 && expect_no_out '^\.gateway_state\.json\.tmp' && expect_out 'init: removed .*tmp\.99999, left by a write that was killed'
}

all_tests+=(
    test_volume_one_owner
    test_volume_runtime_matrix
    test_volume_run_dir_link_not_followed
    test_volume_repair_skips_mounts
    test_volume_logs_link_and_stale_temp
)
