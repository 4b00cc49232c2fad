#!/usr/bin/env bash
# shellcheck disable=SC2154
# The webhook ingress (issue 13): signed webhooks from the host, through a
# published port, to a gateway that only binds 127.0.0.1 in the container.

# sign SECRET TIMESTAMP KEY BODY: the X-Hermes-Signature value (v2).
sign() {
    python3 -c 'import hmac, hashlib, sys
s, ts, key, body = sys.argv[1:5]
msg = ("v2:%s:%s\n" % (ts, key)).encode() + body.encode()
print("v2=" + hmac.new(s.encode(), msg, hashlib.sha256).hexdigest())' "$@"
}

# post URL SECRET KEY BODY: a signed POST from the host; the response head
# and body land in $out. SIGNED_AT overrides the timestamp.
post() {
    local url=$1 secret=$2 key=$3 body=$4 ts sig
    ts=${SIGNED_AT:-$(date +%s)}
    sig=$(sign "$secret" "$ts" "$key" "$body")
    local headers=(-H "X-Hermes-Timestamp: $ts" -H "X-Hermes-Signature: $sig")
    [ -z "$key" ] || headers+=(-H "Idempotency-Key: $key")
    capture curl -sS -i --max-time 20 "${headers[@]}" --data-binary "$body" "$url"
}

test_ingress_from_host() {
    local c port base secret
    c=$(name ingress)
    start_booted "$c" -e HERMES_INGRESS=1 -p 127.0.0.1::8644 -- || return 1
    wait_until 20 "ingress up" slot_is ingress 'true true' || return 1
    port=$(docker port "$c" 8644/tcp | head -n 1)
    port=${port##*:}
    base="http://127.0.0.1:$port"
    create_profile coder || return 1
    as_hermes hermes -p coder gateway start
    expect_rc 0 || return 1
    as_hermes sh -c "sed -n 's/^HERMES_WEBHOOK_SECRET=//p' /opt/data/profiles/coder/.env"
    secret=$out
    [ -n "$secret" ] || { report "no secret in coder's .env"; return 1; }
    wait_until 10 "the ingress answering from the host" curl -s --max-time 2 -o /dev/null "$base/" || return 1

    post "$base/coder/v1/webhooks/github" "$secret" delivery-1 '{"from":"host"}'
    expect_out '^HTTP/1.1 202' || return 1
    expect_out '"duplicate":false' || return 1
    # The same key again, signed again (a signature is accepted once, and the
    # same second would sign it the same): the gateway's answer, through the ingress.
    SIGNED_AT=$(($(date +%s) + 1)) post "$base/coder/v1/webhooks/github" "$secret" delivery-1 '{"from":"host"}'
    expect_out '^HTTP/1.1 202' || return 1
    expect_out '"duplicate":true' || return 1
    capture curl -sS -i --max-time 10 -H "Authorization: Bearer $secret" \
        "$base/coder/v1/webhooks/github/events?after=0&limit=10"
    expect_out '^HTTP/1.1 200' || return 1
    expect_out '\{\\"from\\":\\"host\\"\}' || return 1
    # The ingress holds no secret: a wrong signature is the gateway's 401.
    post "$base/coder/v1/webhooks/github" "not-the-secret" "" '{"from":"host"}'
    expect_out '^HTTP/1.1 401' || return 1
    post "$base/nobody/v1/webhooks/github" "$secret" "" '{}'
    expect_out '^HTTP/1.1 404' || return 1
    expect_out 'unknown_profile' || return 1

    as_hermes hermes status
    expect_out '^Ingress +up \(0\.0\.0\.0:8644' || return 1
    capture docker exec -u hermes -e HERMES_PUBLIC_URL=https://hooks.example.org/ "$c" \
        hermes -p coder webhook url github
    expect_out '^https://hooks\.example\.org/coder/v1/webhooks/github$' || return 1

    as_hermes hermes -p coder gateway stop
    expect_rc 0 || return 1
    post "$base/coder/v1/webhooks/github" "$secret" delivery-2 '{"from":"host"}'
    expect_out '^HTTP/1.1 503' || return 1
    expect_out '^[Rr]etry-[Aa]fter: 60' || return 1
}

all_tests+=(test_ingress_from_host)
