#!/usr/bin/env bash
# Run the whole test suite: lint, type check, then every trial test against real
# PostgreSQL and a real headless Chromium. Installs what is missing first, and starts
# PostgreSQL and Redis when they are installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*"; }

ensure_services() {
    if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
        if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
            log "PostgreSQL is down: starting it"
            pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
        fi
    fi
    if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        if command -v redis-server >/dev/null; then
            log "Redis is down: starting it"
            mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
                --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
        fi
    fi
    if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing Chromium from Debian's packages for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
}

ensure_environment() {
    if [ ! -x .venv/bin/python ]; then
        log "creating the virtual environment in .venv"
        python3 -m venv .venv
    fi
    log "installing the package and test tools"
    .venv/bin/pip install -q --disable-pip-version-check ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import comments, klein, txpostgres, playwright" # fails loudly if the install did
}

ensure_services
ensure_environment

log "ruff"
.venv/bin/ruff check comments plugins tests bench
log "mypy --strict"
.venv/bin/mypy --strict comments

log "trial"
summary=$(mktemp)
set +e
.venv/bin/python -m twisted.trial --reporter=verbose "${@:-tests}" 2>&1 | tee "$summary"
status=${PIPESTATUS[0]}
set -e

# A plain closing line, since trial's own summary is not a format every CI reads.
line=$(grep -E '^(PASSED|FAILED) \(' "$summary" | tail -n 1 || true)
count() {
    local value
    value=$(printf '%s' "$line" | grep -oE "$1=[0-9]+" | cut -d= -f2 || true)
    echo "${value:-0}"
}
failed=$(( $(count failures) + $(count errors) + $(count unexpectedSuccesses) ))
rm -f "$summary"
if [ -z "$line" ]; then
    echo "trial printed no summary: the test run did not finish" >&2
    [ "$status" -ne 0 ] || status=1
fi
echo "$(count successes) passed, ${failed} failed, $(count skips) skipped"
exit "$status"
