#!/bin/sh
# Copies util-linux `mount` and `umount`, with the shared libraries they need beyond glibc, to
# OUT_DIR/usr/bin and OUT_DIR/usr/lib/<multiarch>/. The CSI driver spawns both for its tmpfs
# volumes (csi/mount.ts) and the distroless runtime image has glibc but no util-linux. Run it in
# a Debian stage of the runtime image's release; tests/build_test.ts runs it on the host and
# starts the copies in a chroot that holds nothing but glibc.
set -eu
out=${1:?usage: copy_mount_tools.sh OUT_DIR}
mkdir -p "$out/usr/bin"
for tool in mount umount; do
  cp -L "$(command -v "$tool")" "$out/usr/bin/$tool"
done
ldd "$out/usr/bin/mount" "$out/usr/bin/umount" |
  awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
  while read -r lib; do
    case "${lib##*/}" in libc.so.* | ld-linux*) continue ;; esac
    # /lib/<multiarch>/x and /usr/lib/<multiarch>/x both go to /usr/lib/<multiarch>/x: a real
    # directory in every base image, and on the dynamic loader's built-in search path.
    dest="$out/usr${lib#/usr}"
    mkdir -p "${dest%/*}"
    cp -L "$lib" "$dest"
  done
