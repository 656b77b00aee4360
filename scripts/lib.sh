# Shared helpers for ./scripts/start, ./scripts/test and ./scripts/demo (sourced, not run).
# shellcheck shell=bash

GRANTOR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APT_PACKAGES=(swtpm swtpm-tools softhsm2 tpm2-tools libtss2-dev openssl ca-certificates make g++ python3)
# Grant keys in the TPM (tpm2-pkcs11) and the resource manager it shares the TPM through.
APT_PACKAGES+=(libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus)
# Only ./scripts/test needs these (ensure_test_tools), so the image does not ship them:
# the audit anchor's model checker (models/anchor.pml, scripts/check-model) and promtool
# (metrics exposition and alert rule tests, test/appliance/alerts.test.ts).
APT_TEST_PACKAGES=(spin prometheus)
# nginx in front of a test upstream, gated by grantor-gateway's auth_request endpoint
# (test/gateway-proxy/nginx.test.ts, bench/gateway.ts), and in front of its proxy mode in
# the demo (test/demo/demo.test.ts; ./scripts/demo installs it itself when missing).
APT_TEST_PACKAGES+=(nginx)

log() { printf '[grantor] %s\n' "$*" >&2; }
die() { printf '[grantor] error: %s\n' "$*" >&2; exit 1; }

# Install those of the Debian packages "$@" that are missing (needs root or sudo).
ensure_apt_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_node() {
  command -v node >/dev/null || die "Node.js 20 is required (node not found)"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" = "20" ] || die "Node.js 20 is required (found $(node --version))"
}

# npm ci when node_modules does not match the lock file; it also builds the addon
# (package.json "install" runs node-gyp in native/).
ensure_node_modules() {
  cd "$GRANTOR_ROOT"
  local stamp=node_modules/.grantor-lock-stamp
  if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp" && [ -f native/build/Release/grantor_tpm.node ]; then
    return 0
  fi
  log "npm ci (installs dependencies and builds the TPM addon)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
}

ensure_native_fresh() {
  cd "$GRANTOR_ROOT"
  local addon=native/build/Release/grantor_tpm.node
  if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
    log "building the TPM addon (native/)"
    npm run --silent build:native >/dev/null
  fi
}

ensure_all() {
  ensure_node
  ensure_apt_packages "${APT_PACKAGES[@]}"
  ensure_node_modules
  ensure_native_fresh
}

# What ./scripts/test needs beyond ensure_all.
ensure_test_tools() {
  ensure_apt_packages "${APT_TEST_PACKAGES[@]}"
}

# The grant key in the TPM (--grant-key=tpm): tpm2-abrmd runs on a D-Bus session bus of
# this run only. start_tpm_bus DIR starts one and exports its address
# (DBUS_SESSION_BUS_ADDRESS); its pid and address go to DIR/dbus.pid and DIR/dbus.address, so
# that ./scripts/cli reaches the resource manager of a running ./scripts/start. stop_tpm_bus
# DIR stops it (no-op when none runs). ./scripts/start and ./scripts/cli share both.
start_tpm_bus() {
  local dir=$1 bus
  bus=$(dbus-daemon --session --fork --print-address=1 --print-pid=1)
  printf '%s\n' "$bus" | sed -n 2p >"$dir/dbus.pid"
  DBUS_SESSION_BUS_ADDRESS=$(printf '%s\n' "$bus" | sed -n 1p)
  export DBUS_SESSION_BUS_ADDRESS
  case "$DBUS_SESSION_BUS_ADDRESS" in unix:*) ;; *) die "dbus-daemon did not report its address" ;; esac
  printf '%s\n' "$DBUS_SESSION_BUS_ADDRESS" >"$dir/dbus.address"
}
stop_tpm_bus() {
  local dir=$1
  "$GRANTOR_ROOT/scripts/sim/stop-pid" "$dir/dbus.pid" || true
  rm -f "$dir/dbus.address"
}

# ./scripts/start's environment for ./scripts/cli: $1/grantor.env (mode 0600) with every
# GRANTOR_* setting except secrets given by value (PIN, token, auth, password, secret: the
# *_FILE settings naming their files are kept) and SOFTHSM2_CONF, plus one remote profile per role in $1/profiles/ for the URL $2
# (with the client certificates of the TLS folder $3, when there is one).
write_cli_env() {
  local state=$1 url=$2 tls=${3:-} name role
  (
    umask 077
    {
      printf '# written by ./scripts/start; read by ./scripts/cli\n'
      for name in $(compgen -e | grep -E '^(GRANTOR_[A-Z0-9_]+|SOFTHSM2_CONF|TPM2_PKCS11_STORE)$'); do
        case "$name" in
          *_PIN | *_TOKEN | *_AUTH | *_PASSWORD | *_SECRET) continue ;;
        esac
        printf 'export %s=%q\n' "$name" "${!name}"
      done
      printf 'export GRANTOR_SIM_TPM_DIR=%q\n' "$state/tpm"
      printf 'export GRANTOR_SIM_TPM_PORT=%q\n' "${tpm_port:-2321}"
    } >"$state/grantor.env.tmp"
    mv "$state/grantor.env.tmp" "$state/grantor.env"
    mkdir -p "$state/profiles"
    for role in auditor operator key_custodian; do
      if [ -n "$tls" ]; then
        printf '{ "url": "%s", "cacert": "%s", "cert": "%s", "key": "%s" }\n' "$url" \
          "$tls/server-ca.pem" "$tls/operators/$role.pem" "$tls/operators/$role.key"
      else
        printf '{ "url": "%s" }\n' "$url"
      fi >"$state/profiles/$role.json"
    done
  )
}
