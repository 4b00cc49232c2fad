#!/usr/bin/env bash
# shellcheck disable=SC2154
# The dashboard against users and clients of the container (issue 17, items 5-7).

# http_as USER METHOD PATH [HEADER...]: one request to the dashboard on
# 127.0.0.1:9119 from inside the container as USER, with bash's /dev/tcp (the
# image has no curl). The whole response lands in $out.
http_as() {
    local user=$1 method=$2 path=$3
    shift 3
    local head="$method $path HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n"
    local h
    for h in "$@"; do head+="$h\r\n"; done
    # shellcheck disable=SC2016 # expanded by the bash in the container
    capture docker exec -u "$user" "$container" bash -c \
        'exec 3<>/dev/tcp/127.0.0.1/9119 && printf "%b\r\n" "$1" >&3 && cat <&3' bash "$head"
}

# Another uid in the container (no access to /opt/data, no s6 control) used to
# take the CSRF token from GET /api/session, then stop a gateway, read its log
# and delete a profile. Now every call needs the token, which only the
# service user can read; `hermes dashboard url` as that user prints it.
test_dashboard_other_uid() {
    local c link token
    c=$(name dashuid)
    start_booted "$c" -e HERMES_DASHBOARD=1 -- || return 1
    wait_until 20 "dashboard up" slot_is dashboard 'true true' || return 1
    wait_until 10 "dashboard listening on 127.0.0.1:9119" docker exec "$c" grep -q '0100007F:239F .* 0A ' /proc/net/tcp || return 1
    create_profile coder || return 1

    http_as nobody GET /api/session
    expect_out '"authenticated":false' || return 1
    expect_out '"csrf":null' || return 1
    http_as nobody POST /api/gateways/default/stop 'X-CSRF-Token: x'
    expect_out '^HTTP/1.1 401' || return 1
    http_as nobody GET /api/gateways/default/log
    expect_out '^HTTP/1.1 401' || return 1
    http_as nobody POST /api/profiles/coder/delete 'X-CSRF-Token: x'
    expect_out '^HTTP/1.1 401' || return 1
    as_hermes test -d /opt/data/profiles/coder
    expect_rc 0 || { report "the profile went away"; return 1; }
    capture docker exec -u nobody "$c" cat /opt/data/.dashboard-token
    [ "$rc" != 0 ] || { report "uid 65534 read the dashboard token"; return 1; }
    as_root stat -c '%a %U' /opt/data/.dashboard-token
    expect_out '^600 hermes$' || return 1

    as_hermes hermes dashboard url
    expect_rc 0 || return 1
    link=$out
    token=${link##*#token=}
    if [[ $link != http://127.0.0.1:9119/#token=* ]] || [ "${#token}" != 64 ]; then
        report "not a login link: $link"
        return 1
    fi
    http_as hermes GET /api/status "Authorization: Bearer $token"
    expect_out '^HTTP/1.1 200' || return 1
    expect_out '"profile":"coder"'
}

# A token shorter than 16 bytes on a non-loopback bind (issue 17: `ab` on
# 0.0.0.0 fell in 28 guesses) is a fatal configuration: exit 78 parks the slot.
test_dashboard_weak_token() {
    local c
    c=$(name dashweak)
    start_booted "$c" -e HERMES_DASHBOARD=1 -e HERMES_DASHBOARD_HOST=0.0.0.0 -e HERMES_DASHBOARD_TOKEN=ab -- || return 1
    wait_until 10 "weak-token dashboard parked down" slot_is dashboard 'false false' || return 1
    wait_until 5 "the refusal in the dashboard log" docker exec "$c" grep -q 'of 2 bytes' /opt/data/logs/dashboard/current || return 1
    # Parked for good: one refusal, no restart storm.
    sleep 2.5
    as_root grep -c 'of 2 bytes' /opt/data/logs/dashboard/current
    expect_out '^1$' || return 1
    slot_is dashboard 'false false' || report "the weak-token dashboard came back"
}

all_tests+=(test_dashboard_other_uid test_dashboard_weak_token)
