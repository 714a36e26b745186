#!/usr/bin/env bash
# Makes a local Docker Engine ready for the Docker executor's tests. Installs nothing: it needs
# Debian's `docker.io` (dockerd, containerd, runc, the docker CLI) and `busybox-static`, which
# .ci/run installs with apt-get.
#
# 1. If `docker info` fails, starts dockerd in the background the way DESIGN.md says it runs on
#    these machines:
#        dockerd --storage-driver=vfs --bridge=none --iptables=false
#    - vfs:  works on any filesystem, with no overlay mount support needed (slow, but the test
#            image is 2 MB);
#    - --bridge=none --iptables=false: no docker0 bridge and no iptables rules, neither of which
#            a sandbox may allow or need. Containers then get the host's network (Shoal's
#            Docker executor uses network mode "host" anyway) or none.
#    Its output goes to /tmp/dockerd.log (DOCKERD_LOG overrides). The script waits until the
#    daemon answers (DOCKERD_TIMEOUT seconds, default 60) and otherwise fails with the log's tail.
# 2. Builds the test image `shoal-test/busybox:1` if it is missing (or was built from an older
#    recipe: see RECIPE): `docker import` of a tarball
#    holding busybox-static's /bin/busybox plus symlinks sh, sleep, echo, cat, true, false, ...
#    (no registry is reachable, so nothing can be pulled).
#
# Idempotent: run it as often as you like. It never stops a daemon. It talks to the daemon
# DOCKER_HOST names, else /var/run/docker.sock; it starts one only for the default socket.
#
# Usage: tools/docker_setup.sh
set -euo pipefail

IMAGE="shoal-test/busybox:1"
# Bump when the image's contents change below: an image built from an older recipe is rebuilt.
RECIPE="2"
LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
TIMEOUT="${DOCKERD_TIMEOUT:-60}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

fail() {
  echo "docker_setup: $*" >&2
  exit 1
}

command -v docker >/dev/null || fail "no docker CLI: install Debian's docker.io (apt-get install -y docker.io)"

if ! docker info >/dev/null 2>&1; then
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    fail "DOCKER_HOST=${DOCKER_HOST} does not answer, and this script starts only the default daemon"
  fi
  command -v dockerd >/dev/null || fail "no dockerd: install Debian's docker.io (apt-get install -y docker.io)"
  [ "$(id -u)" -eq 0 ] || fail "dockerd is not running and starting it needs root"
  echo "docker_setup: starting dockerd (log: $LOG)"
  # setsid: its own session, so it outlives this script and a CI step's process group.
  setsid dockerd --storage-driver=vfs --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null &
  pid=$!
  deadline=$((SECONDS + TIMEOUT))
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOG" >&2 || true
      fail "dockerd exited before it was ready (see $LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$LOG" >&2 || true
      fail "dockerd did not answer within ${TIMEOUT}s (see $LOG)"
    fi
    sleep 0.5
  done
  echo "docker_setup: dockerd is ready"
fi

have=$(docker image inspect -f '{{index .Config.Labels "io.shoal.test-image.recipe"}}' "$IMAGE" \
  2>/dev/null || true)
if [ "$have" = "$RECIPE" ]; then
  echo "docker_setup: image $IMAGE is present"
  exit 0
fi

[ -x "$BUSYBOX" ] || fail "no $BUSYBOX: install Debian's busybox-static (apt-get install -y busybox-static)"
file_type=$(LC_ALL=C od -An -c -N4 "$BUSYBOX" | tr -d ' ')
[ "$file_type" = '177ELF' ] || fail "$BUSYBOX is not an ELF binary"
if command -v ldd >/dev/null && ldd "$BUSYBOX" >/dev/null 2>&1; then
  fail "$BUSYBOX is dynamically linked: the image needs busybox-static's"
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/run/secrets"
# mktemp makes the directory 0700; as the image's / it must let every user in.
chmod 755 "$root" "$root/bin" "$root/etc" "$root/run" "$root/run/secrets"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in sh sleep echo cat true false ls env id printf test kill wget nc mkdir rm stat \
  touch grep hostname head tail wc date sed tr uname ps httpd; do
  ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$root.tar" .
docker import \
  --change 'ENV PATH=/bin' \
  --change 'CMD ["/bin/sh"]' \
  --change "LABEL io.shoal.test-image.recipe=$RECIPE" \
  --message "Shoal test image: busybox-static" \
  "$root.tar" "$IMAGE" >/dev/null
rm -f "$root.tar"
echo "docker_setup: built image $IMAGE"
