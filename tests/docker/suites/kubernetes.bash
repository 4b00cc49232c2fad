#!/usr/bin/env bash
# shellcheck disable=SC2154
# deploy/kubernetes/ without a cluster (issue 13): the manifests against the
# Kubernetes API schemas, and the pod's security context under Docker. Both
# parse the manifests (tests/kubernetes/pod.py), so they cannot drift apart.

# A venv with the pinned validator (it ships the schemas, so it works
# offline) and PyYAML, made once under target/.
kubernetes_venv() {
    local venv="$root/target/kubernetes-venv" want="kubernetes-validate==1.37.0 PyYAML==6.0.4"
    if [ "$(cat "$venv/.pinned" 2>/dev/null)" != "$want" ]; then
        rm -rf "$venv"
        capture python3 -m venv "$venv"
        [ "$rc" = 0 ] || { report "python3 -m venv failed (Debian: apt-get install python3-venv)"; return 1; }
        # shellcheck disable=SC2086
        capture "$venv/bin/pip" install --quiet --disable-pip-version-check $want
        [ "$rc" = 0 ] || { report "pip install $want failed"; return 1; }
        printf '%s' "$want" >"$venv/.pinned"
    fi
}

test_kubernetes_manifests() {
    kubernetes_venv || return 1
    capture "$root/target/kubernetes-venv/bin/python3" "$root/tests/kubernetes/pod.py" validate "$root/deploy/kubernetes"
    expect_rc 0 || return 1
    printf '%s\n' "$out" | sed 's/^/  /'
}

# The StatefulSet's pod as `docker run` flags (user, fsGroup, read-only root,
# a tmpfs per emptyDir that outlives container restarts as in a pod, no
# capabilities, no-new-privileges, its env), on a
# volume owned the way fsGroup leaves a fresh claim; its probes run with
# `docker exec` through a boot, a profile started, `docker restart` and a stop.
test_kubernetes_pod() {
    kubernetes_venv || return 1
    capture "$root/target/kubernetes-venv/bin/python3" "$root/tests/kubernetes/pod.py" run "$root/deploy/kubernetes" "$image" "$label"
    printf '%s\n' "$out" | sed 's/^/  /'
    expect_rc 0
}

all_tests+=(test_kubernetes_manifests test_kubernetes_pod)
