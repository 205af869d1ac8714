#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests, run by .ci/run:
#   1. `kubectl kustomize` renders deploy/kubernetes and deploy/kubernetes/examples/collector;
#   2. every rendered object is checked against the Kubernetes OpenAPI schemas of the oldest
#      and the newest version we validate for, in strict mode (unknown fields are errors),
#      by kubernetes-validate from PyPI, installed into a throwaway virtualenv;
#   3. an overlay that changes the namespace moves every object, RBAC subjects included;
#   4. the example targetallocator.yaml is checked by our own `check-config`, as replica
#      otel-targetallocator-0 reads it, when a built binary is at hand (tests/deploy_manifests.rs
#      checks it under `cargo test` in any case, together with the manifests' ports and names).
# No cluster is contacted. Exits non-zero on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest Kubernetes these manifests claim to support, and the newest the pinned
# validator knows.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)
VALIDATOR=kubernetes-validate==1.37.0
KUSTOMIZATIONS=(deploy/kubernetes deploy/kubernetes/examples/collector)
EXAMPLE_CONFIG=deploy/kubernetes/targetallocator.yaml

fail() {
  echo "deploy/validate.sh: $*" >&2
  exit 1
}

if ! command -v kubectl >/dev/null 2>&1; then
  # Debian's kubernetes-client package conflicts with the kubectl this project's machines ship.
  fail "kubectl is not on PATH: install kubectl (1.27 or newer, which includes kustomize) from the Kubernetes release binaries or your distribution's kubectl package"
fi
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to install kubernetes-validate"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if python3 -m venv "$work/venv" >/dev/null 2>&1; then
  python="$work/venv/bin/python"
  "$python" -m pip install --quiet --disable-pip-version-check "$VALIDATOR" \
    || fail "cannot install $VALIDATOR from PyPI"
  validator="$work/venv/bin/kubernetes-validate"
else
  # No venv module (Debian without python3-venv): a user install instead.
  python3 -m pip install --quiet --disable-pip-version-check --user "$VALIDATOR" \
    || fail "cannot install $VALIDATOR (neither python3 -m venv nor pip --user works)"
  python=python3
  validator="$(python3 -m site --user-base)/bin/kubernetes-validate"
fi
[ -x "$validator" ] || fail "kubernetes-validate was installed but $validator is missing"

# kubernetes-validate only warns about a kind it has no schema for; every kind here is a
# built-in one, so a warning is a typo in apiVersion or kind and fails the check too.
validate_rendered() {
  local rendered=$1 version=$2 report
  report=$("$validator" --strict --quiet -k "$version" "$rendered" 2>&1) || {
    printf '%s\n' "$report" >&2
    return 1
  }
  if [ -n "$report" ]; then
    printf '%s\n' "$report" >&2
    return 1
  fi
}

for kustomization in "${KUSTOMIZATIONS[@]}"; do
  rendered="$work/$(echo "$kustomization" | tr / _).yaml"
  kubectl kustomize "$kustomization" >"$rendered" || fail "kubectl kustomize $kustomization failed"
  summary=$("$python" - "$rendered" <<'EOF'
import collections, sys, yaml
with open(sys.argv[1]) as f:
    objects = [o for o in yaml.safe_load_all(f) if o]
kinds = collections.Counter(o["kind"] for o in objects)
print(f"{len(objects)} objects: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
EOF
  ) || fail "cannot read the rendered $kustomization"
  for version in "${KUBERNETES_VERSIONS[@]}"; do
    validate_rendered "$rendered" "$version" \
      || fail "$kustomization does not validate against Kubernetes $version (strict)"
  done
  echo "$kustomization: $summary; valid against Kubernetes ${KUBERNETES_VERSIONS[*]} (strict schemas)"
done

# An overlay that moves the base to another namespace must move everything, the
# ClusterRoleBinding's subject included; docs/operations.md tells users to do exactly that.
overlay="$work/overlay"
mkdir -p "$overlay"
cat >"$overlay/kustomization.yaml" <<EOF
namespace: moved-by-overlay
resources:
- $(realpath --relative-to="$overlay" deploy/kubernetes)
EOF
kubectl kustomize "$overlay" >"$overlay/rendered.yaml" || fail "kubectl kustomize of a namespace overlay failed"
"$python" - "$overlay/rendered.yaml" <<'EOF' || fail "an overlay's namespace does not reach every object"
import sys, yaml
with open(sys.argv[1]) as f:
    objects = [o for o in yaml.safe_load_all(f) if o]
cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
wrong = [f"{o['kind']}/{o['metadata']['name']}: {o['metadata'].get('namespace')}"
         for o in objects
         if o["kind"] not in cluster_scoped and o["metadata"].get("namespace") != "moved-by-overlay"]
wrong += [f"{o['kind']}/{o['metadata']['name']} subject {s['name']}: {s.get('namespace')}"
          for o in objects if o["kind"] == "ClusterRoleBinding"
          for s in o["subjects"] if s.get("namespace") != "moved-by-overlay"]
for line in wrong:
    print(line, file=sys.stderr)
sys.exit(1 if wrong else 0)
EOF
echo "deploy/kubernetes: an overlay's namespace reaches every object and the ClusterRoleBinding's subject"

binary=""
for candidate in target/release/target-allocator target/debug/target-allocator; do
  if [ -x "$candidate" ]; then
    binary=$candidate
    break
  fi
done
if [ -n "$binary" ]; then
  # As replica -0 reads it in the pod: the host name is the pod name, OTELCOL_NAMESPACE the
  # pod's namespace.
  namespace=$("$python" - "$work/deploy_kubernetes.yaml" <<'EOF'
import sys, yaml
with open(sys.argv[1]) as f:
    print(next(o for o in yaml.safe_load_all(f) if o and o["kind"] == "StatefulSet")["metadata"]["namespace"])
EOF
  ) || fail "cannot find the StatefulSet's namespace"
  HOSTNAME=otel-targetallocator-0 OTELCOL_NAMESPACE="$namespace" \
    "$binary" check-config "$EXAMPLE_CONFIG" >"$work/check-config.out" 2>&1 || {
    cat "$work/check-config.out" >&2
    fail "$EXAMPLE_CONFIG is not a valid configuration ($binary check-config)"
  }
  echo "$EXAMPLE_CONFIG: valid for $binary check-config as otel-targetallocator-0 in namespace $namespace"
  sed 's/^/  /' "$work/check-config.out"
else
  echo "$EXAMPLE_CONFIG: no built target-allocator binary, check-config skipped (tests/deploy_manifests.rs loads it under cargo test)"
fi
