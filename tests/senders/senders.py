#!/usr/bin/env python3
"""The webhook schemes proven with the senders' own libraries (issue 18).

Usage: senders.py HERMES_BINARY   (run by tests/senders/run, in its venv)

Against a real `hermes gateway run` process on loopback:
  1. each library that signs (githubkit, slack-sdk, standardwebhooks, svix)
     signs a payload; the gateway accepts it and stores the body byte for byte;
  2. `hermes webhook send --scheme S` signs for every scheme, delivering to a
     stand-in gateway here that verifies with the sender's library (stripe,
     githubkit, slack-sdk, standardwebhooks, svix) and records the request;
     the recorded request is then delivered to the real gateway as it was;
  3. every accepted request, resent with one header or one body byte changed,
     with a header left out, re-encoded, stale, signed with another secret, or
     sent to a hook of another scheme, is refused with its JSON code, and
     nothing more is stored.
Imports fail loudly: a missing library is a failed test, not a skipped one.
"""

import base64
import datetime
import http.client
import http.server
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import githubkit.webhooks
import slack_sdk.signature
import standardwebhooks.webhooks
import stripe
import svix.webhooks

HERMES = os.path.abspath(sys.argv[1])
WORK = tempfile.mkdtemp(prefix="hermes-senders.")
ENV = dict(os.environ, HERMES_HOME=f"{WORK}/home", HERMES_SCANDIR=f"{WORK}/scan",
           HERMES_BIN_DIR=f"{WORK}/bin")
for name in ("HERMES_CONTAINER", "NOTIFY_SOCKET", "HERMES_PUBLIC_URL"):
    ENV.pop(name, None)

# One hook per scheme (svix signs with its own svix-* header names).
HOOKS = {"gh": "github", "st": "stripe", "sl": "slack", "sw": "standard", "sv": "standard",
         "hm": "hermes", "ns": "stripe"}  # ns: no secret stored
SECRETS = {
    "gh": "gh-" + secrets.token_hex(16),
    "st": "whsec_" + secrets.token_hex(16),
    "sl": secrets.token_hex(16),
    "sw": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    "sv": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
}

failures = []


class Failed(Exception):
    pass


def check(cond, what, *context):
    if not cond:
        raise Failed(what + "".join(f"\n    {c}" for c in context))


def hermes(*argv, stdin=None, ok=True):
    cmd = [HERMES, *argv]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=ENV, timeout=60)
    if ok and proc.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {proc.returncode}\n    stdout: {proc.stdout}\n    stderr: {proc.stderr}")
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_profile(name, port):
    hermes("profile", "create", name, "--no-alias", "--port", str(port))
    hooks = "".join(f"    {h}:\n      scheme: {s}\n" for h, s in HOOKS.items())
    with open(f"{WORK}/home/profiles/{name}/config.yaml", "w") as f:
        f.write(f"gateway:\n  host: 127.0.0.1\n  port: {port}\nwebhooks:\n  hooks:\n{hooks}")
    for hook, secret in SECRETS.items():
        out = hermes("-p", name, "webhook", "secret", hook, "--set", stdin=secret + "\n")
        check(secret not in out.stdout + out.stderr, "webhook secret --set printed the secret")
        path = f"{WORK}/home/profiles/{name}/.env.hook.{hook}"
        mode = os.stat(path).st_mode & 0o777
        check(mode == 0o600, f"{path} has mode {mode:o}, not 600")
    with open(f"{WORK}/home/profiles/{name}/.env") as f:
        return next(l.split("=", 1)[1].strip() for l in f if l.startswith("HERMES_WEBHOOK_SECRET="))


def request(port, method, path, headers=(), body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    # Raw header list: nothing is normalised or added but Host and Content-Length.
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, {"raw": data.decode(errors="replace")}


class Gateway:
    def __init__(self, profile, port, secret):
        self.port, self.secret = port, secret
        self.log = open(f"{WORK}/gateway.log", "w")
        self.proc = subprocess.Popen([HERMES, "-p", profile, "gateway", "run"], env=ENV,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, f"gateway exited {self.proc.returncode}", self.tail())
            try:
                if request(port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise Failed("gateway not healthy within 20 s\n" + self.tail())

    def tail(self):
        with open(f"{WORK}/gateway.log") as f:
            return "gateway log:\n" + "".join(f.readlines()[-20:])

    def post(self, hook, headers, body):
        return request(self.port, "POST", f"/v1/webhooks/{hook}", headers, body)

    def events(self, hook):
        status, page = request(self.port, "GET", f"/v1/webhooks/{hook}/events?after=0&limit=1000",
                               [("Authorization", f"Bearer {self.secret}")])
        check(status == 200, f"listing {hook}: {status} {page}")
        return page["events"]

    def stop(self):
        self.proc.terminate()
        rc = self.proc.wait(10)
        check(rc == 0, f"gateway exited {rc} on SIGTERM", self.tail())


def body_for(hook, n):
    """A payload whose exact bytes matter: odd spacing, a non-ASCII name, a trailing newline."""
    payload = {"hook": hook, "n": n, "name": "Zoë ☃", "id": f"evt_{hook}_{n}_{secrets.token_hex(4)}",
               "event_id": f"Ev{hook}{n}{secrets.token_hex(4)}"}
    return (json.dumps(payload, ensure_ascii=False, separators=(", ", ":  ")) + "\n").encode()


def accepted_once(gw, hook, headers, body, what):
    """Deliver; expect a 202 and the body stored byte for byte; return the event id."""
    status, answer = gw.post(hook, headers, body)
    check(status == 202 and answer.get("duplicate") is False,
          f"{what}: the gateway refused a request it must accept: {status} {answer}",
          f"headers: {headers}", f"body: {body!r}", gw.tail())
    stored = [e for e in gw.events(hook) if e["id"] == answer["id"]]
    check(len(stored) == 1 and stored[0]["body"].encode() == body,
          f"{what}: stored body differs from the one sent", f"sent {body!r}", f"stored {stored}")
    return answer["id"]


def flip(text):
    """The same text with its last character changed."""
    return text[:-1] + ("1" if text[-1] == "0" else "0")


def refused(gw, hook, headers, body, code, what):
    before = len(gw.events(hook))
    status, answer = gw.post(hook, headers, body)
    check(status in (400, 401) and (code is None or answer.get("code") == code),
          f"{what}: expected a refusal with code {code}, got {status} {answer}",
          f"headers: {headers}", f"body: {body!r}")
    check("error" in answer and answer["error"], f"{what}: refusal without a message: {answer}")
    check(len(gw.events(hook)) == before, f"{what}: something was stored on refusal")


def tamper_all(gw, hook, headers, body, signed_headers, unsigned=()):
    """One header or one byte changed, a header left out, a re-encoded body: all refused."""
    for i, (name, value) in enumerate(headers):
        if name.lower() not in signed_headers or name.lower() in unsigned:
            continue
        changed = headers[:i] + [(name, flip(value))] + headers[i + 1:]
        refused(gw, hook, changed, body, None, f"{hook}: {name} changed by one character")
        missing = headers[:i] + headers[i + 1:]
        refused(gw, hook, missing, body, None, f"{hook}: {name} left out")
    for pos in (0, len(body) // 2, len(body) - 1):
        altered = bytearray(body)
        altered[pos] ^= 1
        refused(gw, hook, headers, bytes(altered), "bad_signature", f"{hook}: body byte {pos} changed")
    reencoded = json.dumps(json.loads(body), ensure_ascii=False).encode() + b"\n"
    refused(gw, hook, headers, reencoded, "bad_signature", f"{hook}: body re-encoded")
    refused(gw, hook, headers, body + b" ", "bad_signature", f"{hook}: one byte more")


# --- the libraries sign -------------------------------------------------------

def github_signed(body, delivery, secret):
    return [("Content-Type", "application/json"), ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", githubkit.webhooks.sign(secret, body, method="sha256"))]


def slack_signed(body, ts, secret):
    sig = slack_sdk.signature.SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
    return [("Content-Type", "application/json"), ("X-Slack-Request-Timestamp", str(ts)),
            ("X-Slack-Signature", sig)]


def standard_signed(lib, prefix, body, msg_id, ts, secret):
    when = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    sig = lib.Webhook(secret).sign(msg_id, when, body.decode())
    return [("Content-Type", "application/json"), (f"{prefix}-id", msg_id),
            (f"{prefix}-timestamp", str(ts)), (f"{prefix}-signature", sig)]


def test_github(gw):
    body = body_for("gh", 1)
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    headers = github_signed(body, delivery, SECRETS["gh"])
    first = accepted_once(gw, "gh", headers, body, "githubkit-signed")
    # GitHub's redelivery keeps its delivery id: stored once.
    status, answer = gw.post("gh", headers, body)
    check(status == 202 and answer == {"id": first, "hook": "gh", "duplicate": True},
          f"github redelivery: {status} {answer}")
    # X-GitHub-Delivery is not covered by GitHub's signature: not a tamper case.
    tamper_all(gw, "gh", headers, body, {"x-hub-signature-256"})
    refused(gw, "gh", github_signed(body, "other", "not-the-secret"), body, "bad_signature",
            "github: wrong secret")
    refused(gw, "gh", [("X-Hub-Signature-256", "sha1=" + "0" * 40)], body, "malformed_signature",
            "github: sha1 in the sha256 header")
    # githubkit accepts what it signed (sanity of the call above).
    check(githubkit.webhooks.verify(SECRETS["gh"], body, dict(headers)["X-Hub-Signature-256"]),
          "githubkit does not verify its own signature")


def test_slack(gw):
    body = body_for("sl", 1)
    ts = int(time.time())
    headers = slack_signed(body, ts, SECRETS["sl"])
    first = accepted_once(gw, "sl", headers, body, "slack-sdk-signed")
    refused(gw, "sl", headers, body, "replayed", "slack: the same request again")
    # Slack's retry is signed anew; the event_id makes it a duplicate.
    retry = slack_signed(body, ts + 1, SECRETS["sl"]) + [("X-Slack-Retry-Num", "1")]
    status, answer = gw.post("sl", retry, body)
    check(status == 202 and answer["id"] == first and answer["duplicate"] is True,
          f"slack retry: {status} {answer}")
    tamper_all(gw, "sl", slack_signed(body, ts + 2, SECRETS["sl"]), body,
               {"x-slack-signature", "x-slack-request-timestamp"})
    refused(gw, "sl", slack_signed(body, ts - 600, SECRETS["sl"]), body, "timestamp_out_of_window",
            "slack: stale timestamp")
    refused(gw, "sl", slack_signed(body, ts, "not-the-secret"), body, "bad_signature",
            "slack: wrong secret")
    # Saving a Request URL in Slack sends a signed challenge that must come back.
    before = len(gw.events("sl"))
    challenge = b'{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}'
    status, answer = gw.post("sl", slack_signed(challenge, ts + 3, SECRETS["sl"]), challenge)
    check(status == 200 and answer == {"challenge": json.loads(challenge)["challenge"]},
          f"slack url_verification: {status} {answer}")
    check(len(gw.events("sl")) == before, "slack url_verification was stored")
    refused(gw, "sl", slack_signed(challenge, ts + 3, "not-the-secret"), challenge, "bad_signature",
            "slack: url_verification with another secret")


def test_standard(gw, hook, lib, prefix):
    body = body_for(hook, 1)
    ts = int(time.time())
    msg = f"msg_{secrets.token_hex(8)}"
    headers = standard_signed(lib, prefix, body, msg, ts, SECRETS[hook])
    first = accepted_once(gw, hook, headers, body, f"{lib.__name__}-signed")
    refused(gw, hook, headers, body, "replayed", f"{hook}: the same request again")
    retry = standard_signed(lib, prefix, body, msg, ts + 1, SECRETS[hook])
    status, answer = gw.post(hook, retry, body)
    check(status == 202 and answer["id"] == first and answer["duplicate"] is True,
          f"{hook} retry with the same {prefix}-id: {status} {answer}")
    tamper_all(gw, hook, standard_signed(lib, prefix, body, msg, ts + 2, SECRETS[hook]), body,
               {f"{prefix}-id", f"{prefix}-timestamp", f"{prefix}-signature"})
    refused(gw, hook, standard_signed(lib, prefix, body, msg, ts - 600, SECRETS[hook]), body,
            "timestamp_out_of_window", f"{hook}: stale timestamp")
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    refused(gw, hook, standard_signed(lib, prefix, body, msg, ts, other), body, "bad_signature",
            f"{hook}: wrong secret")


def test_wrong_scheme(gw):
    body = body_for("x", 1)
    ts = int(time.time())
    signed = {"gh": github_signed(body, "d-1", SECRETS["gh"]),
              "sl": slack_signed(body, ts, SECRETS["sl"]),
              "sw": standard_signed(standardwebhooks.webhooks, "webhook", body, "m1", ts, SECRETS["sw"])}
    for hook, headers in signed.items():
        for target in ("gh", "sl", "sw", "st", "hm"):
            if target != hook and HOOKS[target] != HOOKS[hook]:
                refused(gw, target, headers, body, "wrong_scheme",
                        f"{HOOKS[hook]} request to the {HOOKS[target]} hook {target}")


# --- hermes signs, the libraries verify ------------------------------------------

def library_accepts(hook, headers, body):
    """The sender's own library on what `hermes webhook send` produced; raises if it refuses."""
    h = {k.lower(): v for k, v in headers}
    secret = SECRETS[hook]
    if hook == "st":
        stripe.WebhookSignature.verify_header(body.decode(), h["stripe-signature"], secret, tolerance=300)
    elif hook == "gh":
        if not githubkit.webhooks.verify(secret, body, h["x-hub-signature-256"]):
            raise ValueError("githubkit: signature does not match")
    elif hook == "sl":
        verifier = slack_sdk.signature.SignatureVerifier(secret)
        if not verifier.is_valid(body, h.get("x-slack-request-timestamp"), h.get("x-slack-signature")):
            raise ValueError("slack-sdk: signature does not match")
    elif hook == "sw":
        standardwebhooks.webhooks.Webhook(secret).verify(body, h)
    elif hook == "sv":
        svix.webhooks.Webhook(secret).verify(body, h)
    else:
        raise ValueError(f"no library for hook {hook}")


class Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in gateway: records each request and answers as the library judged it."""
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        hook = self.path.rsplit("/", 1)[-1]
        headers = [(k, v) for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")]
        try:
            library_accepts(hook, headers, body)
            verdict, status, answer = None, 202, {"id": len(self.seen) + 1, "hook": hook, "duplicate": False}
        except Exception as e:  # the library's own exception types differ
            verdict, status, answer = repr(e), 401, {"error": f"library refused: {e}", "code": "library_refused"}
        Recorder.seen.append((hook, headers, body, verdict))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_hermes_signs(gw, stand_in):
    for hook in ("st", "gh", "sl", "sw", "sv"):
        body = body_for(hook, 2)
        with open(f"{WORK}/body", "wb") as f:
            f.write(body)
        before = len(Recorder.seen)
        proc = hermes("-p", stand_in, "webhook", "send", hook, "--scheme", HOOKS[hook],
                      "--data", f"@{WORK}/body", ok=False)
        check(len(Recorder.seen) == before + 1, f"webhook send {hook} did not reach the stand-in",
              proc.stdout, proc.stderr)
        _, headers, got, verdict = Recorder.seen[-1]
        check(got == body, f"webhook send {hook} changed the body")
        check(verdict is None and proc.returncode == 0,
              f"the {HOOKS[hook]} library refused what `hermes webhook send --scheme {HOOKS[hook]}` signed: {verdict}",
              f"headers: {headers}", proc.stdout, proc.stderr)
        # The same bytes, to the real gateway.
        accepted_once(gw, hook, headers, body, f"hermes-signed {HOOKS[hook]} request")
        if hook == "st":
            # Nothing signs for Stripe but hermes, so its tamper cases use this request.
            refused(gw, "st", headers, body, "replayed", "stripe: the same request again")
            signed_part = {"stripe-signature"}
            # Another moment's signature for the same event: stored once (its id).
            second = int(time.time())
            while int(time.time()) == second:
                time.sleep(0.01)
            hermes("-p", stand_in, "webhook", "send", hook, "--data", f"@{WORK}/body")
            _, later, _, _ = Recorder.seen[-1]
            status, answer = gw.post("st", later, body)
            check(status == 202 and answer["duplicate"] is True, f"stripe retry: {status} {answer}")
            while int(time.time()) == second + 1:
                time.sleep(0.01)
            hermes("-p", stand_in, "webhook", "send", hook, "--data", f"@{WORK}/body")
            fresh = Recorder.seen[-1][1]
            tamper_all(gw, "st", fresh, body, signed_part)
            # The signed time moved by a second, the v1 value kept.
            t = int(dict((k.lower(), v) for k, v in fresh)["stripe-signature"].split(",")[0][2:])
            moved = [(k, v.replace(f"t={t},", f"t={t - 1},")) for k, v in fresh]
            check(moved != fresh, f"no t= in {fresh}")
            refused(gw, "st", moved, body, "bad_signature", "stripe: t= changed")
            stripe_header = dict((k.lower(), v) for k, v in fresh)["stripe-signature"]
            refused(gw, "st", [("Stripe-Signature", stripe_header.split(",")[0])], body,
                    "malformed_signature", "stripe: no v1 signature")
    # A library refuses a request signed with another secret (the stand-in is honest).
    hermes("-p", stand_in, "webhook", "secret", "sw", "--set",
           stdin="whsec_" + base64.b64encode(b"another secret, 24 bytes").decode())
    proc = hermes("-p", stand_in, "webhook", "send", "sw", "--data", "{}", ok=False)
    check(proc.returncode != 0 and Recorder.seen[-1][3] is not None,
          "standardwebhooks accepted a signature made with another secret", proc.stdout, proc.stderr)


def test_cli_never_prints_secrets(profile):
    for hook in SECRETS:
        out = hermes("-p", profile, "webhook", "url", hook).stdout
        out += hermes("-p", profile, "webhook", "secret", hook).stdout
        check(SECRETS[hook] not in out, f"webhook url/secret {hook} printed the secret", out)
        check(f"/v1/webhooks/{hook}" in out, f"webhook url {hook} has no URL", out)


def test_status_and_doctor(gw, profile):
    status, answer = gw.post("ns", [("Stripe-Signature", f"t={int(time.time())},v1={'0' * 64}")], b"{}")
    check(status == 503 and answer.get("code") == "hook_secret_missing" and "--set" in answer["error"],
          f"a stripe hook without its secret: {status} {answer}")
    check(gw.events("ns") == [], "a hook without its secret stored something")
    # The gateway writes the last deliveries at most once a second.
    deadline = time.monotonic() + 10
    while True:
        snap = json.loads(hermes("status", "--json").stdout)
        g = next(g for g in snap["gateways"] if g["profile"] == profile)
        hooks = {h["hook"]: h for h in g["hooks"]}
        if all(hooks.get(h, {}).get("last_delivery") for h in HOOKS if h != "hm"):
            break
        check(time.monotonic() < deadline, "status --json lacks a last delivery", json.dumps(g["hooks"]))
        time.sleep(0.1)
    for hook, scheme in HOOKS.items():
        check(hooks[hook]["scheme"] == scheme, f"status: hook {hook} is {hooks[hook]['scheme']}, not {scheme}")
    check(hooks["ns"]["secret"] == "missing" and hooks["ns"]["last_delivery"]["code"] == "hook_secret_missing",
          f"status: hook ns {hooks['ns']}")
    check(hooks["gh"]["secret"] == "own" and hooks["hm"]["secret"] == "profile", f"status: {hooks}")
    text = hermes("status").stdout
    check("ns stripe: NO SECRET, 503 hook_secret_missing" in text, "status text lacks the hooks", text)
    doctor = json.loads(hermes("doctor", "--json", ok=False).stdout)
    c = next(c for c in doctor["checks"] if c["name"] == "webhook hooks")
    check(not c["ok"] and "webhook secret ns --set" in c["fix"] and "gh github:" in c["detail"],
          f"doctor: {c}")


def main():
    port, stand_in_port = free_port(), free_port()
    secret = make_profile("senders", port)
    make_profile("standin", stand_in_port)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", stand_in_port), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gw = Gateway("senders", port, secret)
    tests = [("github (githubkit signs)", lambda: test_github(gw)),
             ("slack (slack-sdk signs)", lambda: test_slack(gw)),
             ("standard (standardwebhooks signs)",
              lambda: test_standard(gw, "sw", standardwebhooks.webhooks, "webhook")),
             ("standard (svix signs, svix-* headers)",
              lambda: test_standard(gw, "sv", svix.webhooks, "svix")),
             ("a request signed for another scheme", lambda: test_wrong_scheme(gw)),
             ("hermes webhook send signs, each library verifies", lambda: test_hermes_signs(gw, "standin")),
             ("webhook url and secret never print a secret", lambda: test_cli_never_prints_secrets("senders")),
             ("status and doctor show each hook's scheme and last delivery",
              lambda: test_status_and_doctor(gw, "senders"))]
    try:
        for name, test in tests:
            try:
                test()
                print(f"ok    {name}")
            except Failed as e:
                failures.append(name)
                print(f"FAIL  {name}: {e}")
            except Exception:
                failures.append(name)
                print(f"FAIL  {name}:\n{traceback.format_exc()}")
    finally:
        gw.stop()
        server.shutdown()
    print(f"{len(tests) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
