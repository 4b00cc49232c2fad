#!/usr/bin/env python3
"""deploy/kubernetes/ checked without a cluster.

  pod.py validate DIR          every manifest the kustomization lists (and no
                               YAML file left out of it) against the Kubernetes
                               API schemas, strictly; the pod against the
                               restricted Pod Security Standard
  pod.py run DIR IMAGE LABEL   the pod's container under Docker with its
                               security context translated flag by flag, the
                               probes run as the kubelet runs them

Both read the manifests themselves: change one and this follows, or fails.
"""

import json
import os
import shlex
import subprocess
import sys
import time

import yaml

KUBERNETES_VERSION = "1.37.0"


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def load_all(directory):
    """The kustomization's resources, as (file, document) pairs."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    listed = kustomization.get("resources", [])
    on_disk = sorted(
        n for n in os.listdir(directory)
        if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml"
    )
    if sorted(listed) != on_disk:
        fail(f"kustomization.yaml lists {sorted(listed)}, the directory has {on_disk}")
    docs = []
    for name in listed:
        with open(os.path.join(directory, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((name, doc))
    return kustomization, docs


def one(docs, kind):
    found = [d for _, d in docs if d.get("kind") == kind]
    if len(found) != 1:
        fail(f"want exactly one {kind}, found {len(found)}")
    return found[0]


# ------------------------------------------------------------------ validate

def restricted_violations(pod):
    """The restricted Pod Security Standard (Kubernetes' own list), checked
    on the pod template; returns one line per violation."""
    bad = []
    psc = pod.get("securityContext") or {}
    allowed_volumes = {
        "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
        "persistentVolumeClaim", "projected", "secret",
    }
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= allowed_volumes:
            bad.append(f"volume {v['name']}: type {sorted(kinds)} not allowed")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            bad.append(f"{flag} is set")
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]

        def field(key):
            return sc.get(key, psc.get(key))

        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation is not false")
        if field("runAsNonRoot") is not True:
            bad.append(f"{name}: runAsNonRoot is not true")
        if field("runAsUser") == 0:
            bad.append(f"{name}: runAsUser is 0")
        seccomp = field("seccompProfile") or {}
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile is {seccomp.get('type')}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds capabilities {caps['add']}")
        for p in c.get("ports", []):
            if p.get("hostPort"):
                bad.append(f"{name}: hostPort {p['hostPort']}")
    return bad


def validate(directory):
    import kubernetes_validate

    _, docs = load_all(directory)
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{name}: {doc.get('kind')}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
        print(f"{name}: {doc['kind']}/{doc['metadata']['name']} valid for Kubernetes {KUBERNETES_VERSION} (strict)")
    sts = one(docs, "StatefulSet")
    bad = restricted_violations(sts["spec"]["template"]["spec"])
    if bad:
        fail("restricted Pod Security Standard: " + "; ".join(bad))
    print("statefulset: meets the restricted Pod Security Standard")
    # The kubelet also wants these, or the pod misbehaves rather than fails validation.
    pod = sts["spec"]["template"]["spec"]
    if sts["spec"].get("replicas") != 1:
        fail("the StatefulSet must run exactly one replica (one owner per volume)")
    if pod.get("enableServiceLinks") is not False:
        fail("enableServiceLinks must be false: a Service named hermes injects HERMES_* variables")
    svc = one(docs, "Service")
    ports = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
    for p in svc["spec"]["ports"]:
        if p["targetPort"] not in ports:
            fail(f"Service port {p['name']} targets {p['targetPort']}, which no container names")
    want_probes = {"startupProbe": ["health"], "readinessProbe": ["health"], "livenessProbe": ["health", "--live"]}
    for c in pod["containers"]:
        for kind, args in want_probes.items():
            argv = c.get(kind, {}).get("exec", {}).get("command", [])
            if len(argv) != len(args) + 1 or os.path.basename(argv[0]) != "hermes" or argv[1:] != args:
                fail(f"{c['name']}: {kind} runs {argv}, want hermes {' '.join(args)}")
    secret_names = {d["metadata"]["name"] for _, d in docs if d["kind"] == "Secret"}
    for c in pod["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] not in secret_names:
                fail(f"env {e['name']} reads Secret {ref['name']}, which is not shipped")


# ------------------------------------------------------------------ run

class Pod:
    """The StatefulSet's pod translated into `docker run` arguments."""

    def __init__(self, directory):
        _, docs = load_all(directory)
        self.sts = one(docs, "StatefulSet")
        self.secrets = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Secret"}
        self.pod = self.sts["spec"]["template"]["spec"]
        (self.container,) = self.pod["containers"]
        self.grace = self.pod.get("terminationGracePeriodSeconds", 30)

    def secret_value(self, ref):
        s = self.secrets[ref["name"]]
        if ref["key"] in s.get("stringData", {}):
            return s["stringData"][ref["key"]]
        import base64
        return base64.b64decode(s["data"][ref["key"]]).decode()

    def env(self):
        out = {}
        for e in self.container.get("env", []):
            if "value" in e:
                out[e["name"]] = str(e["value"])
            elif "secretKeyRef" in e.get("valueFrom", {}):
                out[e["name"]] = self.secret_value(e["valueFrom"]["secretKeyRef"])
            else:
                fail(f"env {e['name']}: no translation for {e}")
        return out

    def security_flags(self):
        psc = self.pod.get("securityContext", {})
        sc = self.container.get("securityContext", {})

        def field(key):
            return sc.get(key, psc.get(key))

        flags = []
        uid, gid = field("runAsUser"), field("runAsGroup")
        if uid is None:
            fail("no runAsUser: the translation needs the uid the kubelet would use")
        if field("runAsNonRoot") and uid == 0:
            fail("runAsNonRoot with runAsUser 0: the kubelet would refuse the pod")
        flags += ["--user", f"{uid}:{gid if gid is not None else 0}"]
        if psc.get("fsGroup") is not None:
            flags += ["--group-add", str(psc["fsGroup"])]
        for g in psc.get("supplementalGroups", []):
            flags += ["--group-add", str(g)]
        if sc.get("readOnlyRootFilesystem"):
            flags.append("--read-only")
        caps = sc.get("capabilities") or {}
        for c in caps.get("drop") or []:
            flags += ["--cap-drop", c]
        for c in caps.get("add") or []:
            flags += ["--cap-add", c]
        if sc.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        seccomp = (field("seccompProfile") or {}).get("type")
        # Docker's default profile is the runtime default; anything else has no translation.
        if seccomp not in (None, "RuntimeDefault"):
            fail(f"seccompProfile {seccomp}: no translation")
        return flags

    def mounts(self):
        """Each emptyDir as the kubelet makes it, and the claim's mount path.

        An emptyDir with medium Memory is an empty tmpfs (exec allowed), mode
        0777, and with fsGroup group fsGroup plus setgid. `--tmpfs` cannot
        give that at a path the image has: Docker copies the image's /run into
        it and resets its mode to the image directory's (0755 root). A local
        volume of type tmpfs mounted with nocopy gives exactly the emptyDir.
        Returns ([(name, path, mount options)], claim path)."""
        psc = self.pod.get("securityContext", {})
        fs_group = psc.get("fsGroup")
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in self.sts["spec"].get("volumeClaimTemplates", [])}
        empty_dirs, data_path = [], None
        for m in self.container.get("volumeMounts", []):
            name, path = m["name"], m["mountPath"]
            if name in claims:
                data_path = path
                continue
            v = volumes.get(name)
            if v is None or "emptyDir" not in v:
                fail(f"volumeMount {name}: no translation for {v}")
            ed = v["emptyDir"] or {}
            if ed.get("medium") != "Memory":
                fail(f"emptyDir {name}: medium {ed.get('medium')}, the translation is for Memory (tmpfs)")
            opts = ["mode=2777", f"gid={fs_group}"] if fs_group is not None else ["mode=0777"]
            if "sizeLimit" in ed:
                opts.append("size=" + ed["sizeLimit"].replace("Mi", "m").replace("Gi", "g"))
            empty_dirs.append((name, path, ",".join(opts)))
        if data_path is None:
            fail("no volumeMount uses the volumeClaimTemplate")
        return empty_dirs, data_path

    def probe(self, kind):
        p = self.container.get(kind)
        if p is None or "exec" not in p:
            fail(f"{kind}: want an exec probe, got {p}")
        return p


class Runner:
    def __init__(self, pod, image, label):
        self.pod, self.image, self.label = pod, image, label
        self.name = f"{label.split('=', 1)[1]}-k8s-{os.getpid()}"
        self.volume = self.name + "-data"

    def sh(self, argv, timeout=120, check=True):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            self.dump(f"command failed ({r.returncode}): {shlex.join(argv)}\n{r.stdout}{r.stderr}")
        return r

    def dump(self, msg):
        print(f"FAIL: {msg}")
        logs = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True)
        print("  docker logs:")
        for line in (logs.stdout + logs.stderr).splitlines()[-40:]:
            print("    | " + line)
        sys.exit(1)

    def exec_probe(self, kind):
        """The probe's argv through `docker exec` as the container's user,
        bounded by its timeoutSeconds, as the kubelet runs it."""
        p = self.pod.probe(kind)
        argv = ["docker", "exec", self.name] + p["exec"]["command"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True,
                               timeout=p.get("timeoutSeconds", 1))
        except subprocess.TimeoutExpired:
            return None, f"timed out after {p.get('timeoutSeconds', 1)} s"
        return r.returncode, r.stdout + r.stderr

    def until_started(self, what):
        """startupProbe: every periodSeconds until success, failureThreshold tries."""
        p = self.pod.probe("startupProbe")
        period, tries = p.get("periodSeconds", 10), p.get("failureThreshold", 3)
        t0 = time.monotonic()
        for _ in range(tries):
            running = self.sh(["docker", "inspect", "-f", "{{.State.Running}}", self.name]).stdout.strip()
            if running != "true":
                # The kubelet would restart it in a loop; here that is the failure.
                self.dump(f"{what}: the container exited before its startupProbe passed")
            rc, out = self.exec_probe("startupProbe")
            if rc == 0:
                print(f"  {what}: startupProbe passed after {time.monotonic() - t0:.1f} s")
                return
            last = f"exit {rc}: {out.strip()}"
            time.sleep(period)
        self.dump(f"{what}: startupProbe never passed in {tries} x {period} s; last: {last}")

    def expect_probe(self, kind, want_ok, what):
        rc, out = self.exec_probe(kind)
        if (rc == 0) != want_ok:
            self.dump(f"{what}: {kind} {self.pod.probe(kind)['exec']['command']} gave exit {rc}, "
                      f"want {'0' if want_ok else 'non-zero'}: {out.strip()}")
        print(f"  {what}: {kind} exit {rc}")

    def prepare_volume(self, data_path, fs_group):
        """A fresh claim as the kubelet hands it over with fsGroup: owned by
        root, group fsGroup, setgid, group-writable."""
        self.sh(["docker", "volume", "create", "--label", self.label, self.volume])
        self.sh(["docker", "run", "--rm", "--label", self.label, "--entrypoint", "sh",
                 "-v", f"{self.volume}:{data_path}", self.image, "-c",
                 f"chown 0:{fs_group} {data_path} && chmod 2775 {data_path}"])

    def pod_sandbox(self, empty_dirs):
        """The emptyDirs live as long as the pod, across container restarts:
        a sandbox container (the pod's pause container) holds them mounted.
        Returns the -v flags for the hermes container."""
        flags = []
        for name, path, opts in empty_dirs:
            vol = f"{self.name}-{name}"
            self.sh(["docker", "volume", "create", "--label", self.label, "--driver", "local",
                     "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", f"o={opts}", vol])
            flags += ["-v", f"{vol}:{path}:nocopy"]
        self.sh(["docker", "run", "-d", "--label", self.label, "--name", self.name + "-sandbox",
                 "--entrypoint", "sleep"] + flags + [self.image, "infinity"])
        return flags

    def run(self):
        pod = self.pod
        flags = pod.security_flags()
        empty_dirs, data_path = pod.mounts()
        mounts = self.pod_sandbox(empty_dirs)
        fs_group = pod.pod.get("securityContext", {}).get("fsGroup", 0)
        self.prepare_volume(data_path, fs_group)
        env = []
        for k, v in pod.env().items():
            env += ["-e", f"{k}={v}"]
        argv = (["docker", "run", "-d", "--label", self.label, "--name", self.name]
                + flags + mounts + ["-v", f"{self.volume}:{data_path}"] + env
                + [self.image] + [str(a) for a in pod.container.get("args", [])])
        shown = [a if not a.startswith("HERMES_DASHBOARD_TOKEN=") else "HERMES_DASHBOARD_TOKEN=…" for a in argv]
        print("  " + shlex.join(shown))
        self.sh(argv)

        self.until_started("first boot")
        self.expect_probe("readinessProbe", True, "first boot")
        self.expect_probe("livenessProbe", True, "first boot")

        # A profile, as the README says: kubectl exec runs as the pod's user.
        self.sh(["docker", "exec", self.name, "hermes", "profile", "create", "coder"])
        self.sh(["docker", "exec", self.name, "hermes", "-p", "coder", "gateway", "start"])
        self.expect_probe("readinessProbe", True, "coder started")
        self.expect_probe("livenessProbe", True, "coder started")
        self.dashboard_answers()

        t0 = time.monotonic()
        self.sh(["docker", "restart", "-t", str(pod.grace), self.name], timeout=pod.grace + 60)
        self.until_started("after docker restart")
        print(f"  docker restart until startupProbe passed: {time.monotonic() - t0:.1f} s")
        self.expect_probe("readinessProbe", True, "after docker restart")
        self.expect_probe("livenessProbe", True, "after docker restart")
        r = self.sh(["docker", "exec", self.name, "hermes", "-p", "coder", "gateway", "status", "--json"])
        st = json.loads(r.stdout)
        st = st[0] if isinstance(st, list) else st
        if st.get("up") is not True:
            self.dump(f"coder is not up after docker restart: {r.stdout}")
        print("  after docker restart: coder up again")

        t0 = time.monotonic()
        self.sh(["docker", "stop", "-t", str(pod.grace), self.name], timeout=pod.grace + 60)
        ms = int((time.monotonic() - t0) * 1000)
        code = self.sh(["docker", "inspect", "-f", "{{.State.ExitCode}}", self.name]).stdout.strip()
        if code != "0":
            self.dump(f"docker stop -t {pod.grace}: exit code {code}, want 0")
        if ms >= pod.grace * 1000:
            self.dump(f"docker stop took {ms} ms: the grace period of {pod.grace} s ran out")
        print(f"  docker stop -t {pod.grace} (terminationGracePeriodSeconds): exit 0 in {ms} ms")

    def dashboard_answers(self):
        """The Service's dashboard port answers on the pod's address with the Secret's token."""
        ports = {p["name"]: p["containerPort"] for p in self.pod.container.get("ports", [])}
        token = self.pod.env().get("HERMES_DASHBOARD_TOKEN")
        if "dashboard" not in ports or not token:
            return
        ip = self.sh(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                      self.name]).stdout.strip()
        url = f"http://{ip}:{ports['dashboard']}/api/status"
        deadline = time.monotonic() + 20
        while True:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2",
                                "-H", f"Authorization: Bearer {token}", url],
                               capture_output=True, text=True)
            if r.stdout == "200":
                break
            if time.monotonic() > deadline:
                self.dump(f"dashboard on the pod address: {url} answered {r.stdout!r}, want 200")
            time.sleep(0.2)
        print(f"  dashboard answers on the pod address, port {ports['dashboard']} (200 with the token)")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "validate":
        validate(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "run":
        Runner(Pod(sys.argv[2]), sys.argv[3], sys.argv[4]).run()
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
