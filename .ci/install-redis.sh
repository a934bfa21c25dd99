#!/usr/bin/env bash
# Installs Debian's redis-server when it is missing (the flag-store tests start real servers).
# Idempotent and quiet; needs root (CI runs as root). Without root it says so and carries on:
# the Redis tests then skip locally (and fail under CI=true).
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "redis-server is missing and this is not root: install it to run the Redis tests" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq redis-server >/dev/null
command -v redis-server >/dev/null
