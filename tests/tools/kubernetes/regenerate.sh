#!/usr/bin/env bash
# Rewrites go.mod/go.sum of this module for another Kubernetes release, e.g.
#   bash tests/tools/kubernetes/regenerate.sh v1.36.3
# k8s.io/kubernetes requires its staging modules at v0.0.0 (replaced by ./staging in its own
# repository), so this module replaces each of them with its published v0.<minor>.<patch>. The list
# is read from that release's go.mod. Update k8s_version in ../build.sh to match.
set -euo pipefail
version="${1:?usage: regenerate.sh vMAJOR.MINOR.PATCH}"
cd "$(dirname "${BASH_SOURCE[0]}")"
staging_version="v0.${version#v1.}"
gomod="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
[ -f "$gomod" ] || { echo "regenerate.sh: cannot download k8s.io/kubernetes@$version" >&2; exit 1; }
go_line="$(grep -m1 '^go ' "$gomod")"
{
  echo "module spire-cacerts.test/tools/kubernetes"
  echo
  echo "$go_line"
  echo
  echo "tool ("
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
  echo "	k8s.io/kubernetes/cmd/kube-proxy"
  echo "	k8s.io/kubernetes/cmd/kube-scheduler"
  echo "	k8s.io/kubernetes/cmd/kubectl"
  echo "	k8s.io/kubernetes/cmd/kubelet"
  echo ")"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  echo "replace ("
  grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" |
    awk -v v="$staging_version" '{printf "\t%s => %s %s\n", $1, $1, v}'
  echo ")"
} >go.mod
rm -f go.sum
GOFLAGS=-mod=mod go mod tidy
echo "regenerate.sh: go.mod now builds k8s.io/kubernetes $version with staging modules at $staging_version"
