#!/usr/bin/env bash
# What the test suite needs besides npm's packages, so that `npm test` is the whole set-up on a
# fresh machine (Debian, run as root, as CI and developer machines here are):
#   - Debian's docker.io (a real dockerd for the Docker executor's tests) and busybox-static (the
#     test image's only program), and chromium (the dashboard's browser tests);
#   - dockerd running with DESIGN.md's flags, and the test image (tools/docker_setup.sh).
# Packages already installed are not fetched again. Without root it installs nothing and says
# what is missing; the tests that need it then fail with their own clear message.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker.io busybox-static chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "test setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test setup: missing Debian packages ${missing[*]} (install them as root); continuing" >&2
  fi
fi

tools/docker_setup.sh
