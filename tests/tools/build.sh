#!/usr/bin/env bash
# Builds the real components the test suite runs (kube-apiserver, kubectl, kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy, etcd, spire-server,
# spire-agent, spiffe-helper, csi-sanity, csc, when present csi-churn, admission-client (a Go
# net/http webhook client like kube-apiserver's), and the programs of the local cluster's images:
# coredns, spire-controller-manager, pause and stand-ins for csi-node-driver-registrar and
# livenessprobe) from the Go modules beside this script, into
# ${SPIRE_CACERTS_TOOLS_DIR:-$HOME/.cache/spire-cacerts/tools}/bin.
#
# Each module is rebuilt only when its stamp (hash of go.mod, go.sum, its sources when it has any,
# the build flags and the Go version) changes, so a run with nothing changed takes seconds.
# Concurrent runs wait for each other (flock). Prints one line per tool: name, version, module.
#
# Environment:
#   SPIRE_CACERTS_TOOLS_DIR  where bin/ and the stamps live (default ~/.cache/spire-cacerts/tools)
#   SPIRE_CACERTS_TOOLS      space-separated subset of modules to build (default: all); "cluster"
#                            includes its nested module cluster/controller-manager
#   SPIRE_CACERTS_TOOLS_FORCE=1  ignore the stamps and rebuild
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${SPIRE_CACERTS_TOOLS_DIR:-$HOME/.cache/spire-cacerts/tools}"
bin_dir="$tools_dir/bin"
stamp_dir="$tools_dir/stamps"
mkdir -p "$bin_dir" "$stamp_dir"

fail() {
  echo "tests/tools/build.sh: FAILED: $*" >&2
  exit 1
}

# Runs a command, and on failure names it (with its directory) and stops the script.
run() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "(exit $rc, in $PWD) $(printf '%q ' "$@")"
  fi
}

command -v go >/dev/null 2>&1 || fail "go is not on PATH (install Go >= 1.26)"
command -v gcc >/dev/null 2>&1 || fail "gcc is not on PATH (needed for CGO: spire-server's sqlite datastore)"

exec 9>"$tools_dir/.lock"
flock 9

# Asked inside a module so that GOTOOLCHAIN=auto, where allowed, switches to the go.mod version.
go_version="$(cd "$here/kubernetes" && go env GOVERSION)" || fail "go env GOVERSION"
case "$go_version" in
go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
*) fail "Go >= 1.26 is needed (found $go_version at $(command -v go)); Debian's golang-go is too old" ;;
esac
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod -buildvcs=false"

k8s_version=v1.37.2
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# Without these, --version prints "<base>-dev-unk".
spire_ldflags="-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=1.13.3"
helper_ldflags="-s -w -X github.com/spiffe/spiffe-helper/pkg/version.gittag=0.11.0"

# One line per tool: module-dir|binary|package|module path (for its version)|CGO_ENABLED|ldflags
specs() {
  cat <<EOF
kubernetes|kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes|1|$k8s_ldflags
kubernetes|kubectl|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes|1|$k8s_ldflags
kubernetes|kubelet|k8s.io/kubernetes/cmd/kubelet|k8s.io/kubernetes|1|$k8s_ldflags
kubernetes|kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|k8s.io/kubernetes|1|$k8s_ldflags
kubernetes|kube-scheduler|k8s.io/kubernetes/cmd/kube-scheduler|k8s.io/kubernetes|1|$k8s_ldflags
kubernetes|kube-proxy|k8s.io/kubernetes/cmd/kube-proxy|k8s.io/kubernetes|1|$k8s_ldflags
etcd|etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3|0|-s -w
spire|spire-server|github.com/spiffe/spire/cmd/spire-server|github.com/spiffe/spire|1|$spire_ldflags
spire|spire-agent|github.com/spiffe/spire/cmd/spire-agent|github.com/spiffe/spire|1|$spire_ldflags
spire|spiffe-helper|github.com/spiffe/spiffe-helper/cmd/spiffe-helper|github.com/spiffe/spiffe-helper|0|$helper_ldflags
csi|csi-sanity|github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity|github.com/kubernetes-csi/csi-test/v5|0|-s -w
csi|csc|github.com/dell/gocsi/csc|github.com/dell/gocsi|0|-s -w
churn|csi-churn|.||0|-s -w
admission-client|admission-client|.||0|-s -w
cluster|coredns|./coredns|github.com/coredns/coredns|0|-s -w
cluster|pause|./pause||0|-s -w
cluster|csi-node-driver-registrar|./csi-node-driver-registrar||0|-s -w
cluster|livenessprobe|./livenessprobe||0|-s -w
cluster|roots-once-client|./roots-once-client||0|-s -w
cluster/controller-manager|spire-controller-manager|github.com/spiffe/spire-controller-manager/cmd|github.com/spiffe/spire-controller-manager|0|-s -w
EOF
}

modules=""
for mod in ${SPIRE_CACERTS_TOOLS:-kubernetes etcd spire csi churn admission-client cluster}; do
  modules+=" $mod"
  # spire-controller-manager pins an older client-go than CoreDNS: it is its own module.
  if [ "$mod" = cluster ]; then modules+=" cluster/controller-manager"; fi
done
summary=()
total_start=$SECONDS

for mod in $modules; do
  dir="$here/$mod"
  if [ ! -f "$dir/go.mod" ]; then
    if [ "$mod" = churn ]; then continue; fi
    fail "no go.mod in $dir"
  fi
  mod_specs="$(specs | awk -F'|' -v m="$mod" '$1 == m')"
  [ -n "$mod_specs" ] || fail "no build spec for module $mod"

  # The stamp covers everything that decides the binaries' bytes.
  stamp="$({
    echo "$go_version"
    echo "$mod_specs"
    cat "$dir/go.mod" "$dir/go.sum" 2>/dev/null
    # Nested modules (their own go.mod) are stamped on their own.
    find "$dir" -mindepth 1 -type d -exec test -e '{}/go.mod' ';' -prune -o -name '*.go' -type f -print |
      LC_ALL=C sort | xargs -r cat
  } | sha256sum | cut -d' ' -f1)"
  stamp_file="$stamp_dir/${mod//\//-}.stamp"
  versions_file="$stamp_dir/${mod//\//-}.versions"

  all_present=1
  while IFS='|' read -r _ name _ _ _ _; do
    [ -x "$bin_dir/$name" ] || all_present=0
  done <<<"$mod_specs"

  if [ "${SPIRE_CACERTS_TOOLS_FORCE:-0}" != 1 ] && [ "$all_present" = 1 ] &&
    [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && [ -f "$versions_file" ]; then
    while IFS= read -r line; do summary+=("$line  (cached)"); done <"$versions_file"
    continue
  fi

  echo "tests/tools/build.sh: building module $mod (go $go_version) ..." >&2
  mod_start=$SECONDS
  staging="$(mktemp -d "$tools_dir/.build-${mod//\//-}.XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  : >"$staging/versions"
  cd "$dir"
  while IFS='|' read -r _ name pkg modpath cgo ldflags; do
    t0=$SECONDS
    run env CGO_ENABLED="$cgo" go build -trimpath -ldflags="$ldflags" -o "$staging/$name" "$pkg"
    if [ -n "$modpath" ]; then
      version="$(go list -m -f '{{.Version}}' "$modpath")" || fail "(in $PWD) go list -m $modpath"
    else
      version="local"
      modpath="tests/tools/$mod"
    fi
    echo "  built $name in $((SECONDS - t0))s" >&2
    printf '%-26s %-10s %s\n' "$name" "$version" "$modpath" >>"$staging/versions"
  done <<<"$mod_specs"
  cd "$here"

  # A kube-apiserver without the version ldflags reports v0.0.0 on /version: refuse it.
  if [ "$mod" = kubernetes ]; then
    reported="$("$staging/kube-apiserver" --version 2>&1)" ||
      fail "$staging/kube-apiserver --version: $reported"
    [ "$reported" = "Kubernetes $k8s_version" ] ||
      fail "kube-apiserver --version says '$reported', expected 'Kubernetes $k8s_version'"
  fi

  while IFS='|' read -r _ name _ _ _ _; do
    mv -f "$staging/$name" "$bin_dir/$name"
  done <<<"$mod_specs"
  mv -f "$staging/versions" "$versions_file"
  echo "$stamp" >"$stamp_file"
  rm -rf "$staging"
  trap - EXIT
  echo "tests/tools/build.sh: module $mod built in $((SECONDS - mod_start))s" >&2
  while IFS= read -r line; do summary+=("$line  (built)"); done <"$versions_file"
done

echo "tools in $bin_dir ($((SECONDS - total_start))s):"
for line in "${summary[@]}"; do echo "  $line"; done
