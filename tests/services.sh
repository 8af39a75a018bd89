#!/usr/bin/env bash
# Services the tests start themselves (a PostgreSQL server, headless Chromium) need Debian packages;
# install the missing ones once, before the test workers start (two workers running apt-get at once
# would collide on dpkg's lock). Where apt-get is unavailable the fixtures say what is missing.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing test services: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
