#!/usr/bin/env bash
# hookflow's whole test suite: formatting, lints, unit and integration tests on SQLite, then the
# integration tests again on PostgreSQL (started, or installed and started, when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Browser tests drive Debian's headless Chromium through chromedriver.
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  step "installing chromium and chromium-driver (browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The providers' official libraries, to sign webhooks in the verification tests.
SIGNERS="${HOOKFLOW_SIGNERS_DIR:-$HOME/.cache/hookflow-signers}"
step "official signing libraries (into $SIGNERS)"
mkdir -p "$SIGNERS/node"
[ -x "$SIGNERS/py/bin/python" ] || python3 -m venv "$SIGNERS/py"
"$SIGNERS/py/bin/pip" install -q --disable-pip-version-check -r scripts/signers/requirements.txt
cp scripts/signers/package.json "$SIGNERS/node/package.json"
(cd "$SIGNERS/node" && npm install --silent --no-audit --no-fund >/dev/null)
export HOOKFLOW_TEST_PYTHON="$SIGNERS/py/bin/python" HOOKFLOW_NODE_MODULES="$SIGNERS/node/node_modules"

step "tests on SQLite"
cargo test --workspace --locked

# PostgreSQL: HOOKFLOW_TEST_POSTGRES names a server (no database part); each test creates its own
# database there. Default: the local server with trust authentication.
PG_URL="${HOOKFLOW_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432}"

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

ensure_postgres() {
  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    step "installing PostgreSQL"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  if ! pg_up; then
    step "starting PostgreSQL"
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    # Tests connect over TCP as postgres without a password, as on the CI machines.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up
}

if [ -n "${HOOKFLOW_TEST_POSTGRES:-}" ] || ensure_postgres; then
  # Databases left by earlier runs.
  if command -v psql >/dev/null 2>&1; then
    psql "$PG_URL/postgres" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'hf\_%'" 2>/dev/null \
      | while read -r db; do psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done
  fi
  step "integration tests on PostgreSQL"
  HOOKFLOW_TEST_POSTGRES="$PG_URL" cargo test -p hookflow --test it --locked
else
  echo "PostgreSQL is not available and could not be started" >&2
  exit 1
fi
