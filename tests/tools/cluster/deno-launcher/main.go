// Command deno-launcher stands in for a `deno compile`d binary in locally built images.
//
// `deno compile` needs the denort runtime, which cannot be downloaded here, so the project's images
// carry the pinned Deno and the `deno bundle` output instead. Images have no shell, and the
// manifests start some programs by path (`command: ["/usr/local/bin/spire-cacerts-client"]`), so
// each /usr/local/bin/<name> is this launcher (a symlink to it) and it replaces itself with
// `deno run -A --no-config /app/<name>.js <args>`, keeping the arguments the manifests pass.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

const (
	denoPath  = "/usr/local/bin/deno"
	bundleDir = "/app"
)

func main() {
	name := filepath.Base(os.Args[0])
	bundle := filepath.Join(bundleDir, name+".js")
	if _, err := os.Stat(bundle); err != nil {
		fmt.Fprintf(os.Stderr, "deno-launcher: no bundle for %q: %v\n", name, err)
		os.Exit(127)
	}
	args := append([]string{denoPath, "run", "--allow-all", "--no-config", bundle}, os.Args[1:]...)
	env := os.Environ()
	// Deno writes its module and code caches under DENO_DIR; the root filesystem is read-only in
	// the manifests, so default it to a tmpfs-friendly place unless the pod sets one.
	if _, ok := os.LookupEnv("DENO_DIR"); !ok {
		env = append(env, "DENO_DIR=/tmp/deno-dir")
	}
	if _, ok := os.LookupEnv("DENO_NO_UPDATE_CHECK"); !ok {
		env = append(env, "DENO_NO_UPDATE_CHECK=1")
	}
	err := syscall.Exec(denoPath, args, env)
	fmt.Fprintf(os.Stderr, "deno-launcher: exec %s: %v\n", denoPath, err)
	os.Exit(127)
}
