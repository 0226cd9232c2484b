#!/usr/bin/env bash
# Install (or remove) speck-edge as systemd services. Run as root from a checkout:
#   sudo deploy/systemd/install.sh              install or update, then start speck-edge.target
#   sudo deploy/systemd/install.sh --uninstall  stop and remove units and /opt/speck-edge
#   sudo deploy/systemd/install.sh --purge      --uninstall, and delete config, state and cache too
# Idempotent: running it again updates the code and units and restarts the running services.
# Environment: PYTHON (default python3, >= 3.11), PREFIX (default /opt/speck-edge; the units name
# /opt/speck-edge/venv/bin/speck-edge, so change both together).
set -euo pipefail

PYTHON=${PYTHON:-python3}
PREFIX=${PREFIX:-/opt/speck-edge}
VENV="$PREFIX/venv"
UNIT_DIR=/etc/systemd/system
CONF_DIR=/etc/speck-edge
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
SERVICES=(sensor filter chip readout exporter)

die() { echo "install.sh: $*" >&2; exit 1; }

uninstall() {
    local purge=$1 svc
    if systemctl list-unit-files speck-edge.target >/dev/null 2>&1; then
        systemctl disable --now speck-edge.target || true
    fi
    for svc in "${SERVICES[@]}"; do
        systemctl disable --now "speck-edge@$svc.service" 2>/dev/null || true
    done
    rm -rf "$UNIT_DIR/speck-edge.target" "$UNIT_DIR/speck-edge@.service" "$UNIT_DIR"/speck-edge@*.service.d
    systemctl daemon-reload
    rm -rf "$PREFIX"
    if [[ $purge == yes ]]; then
        rm -rf "$CONF_DIR" /var/lib/speck-edge /var/lib/private/speck-edge \
            /var/cache/speck-edge /var/cache/private/speck-edge
        echo "speck-edge removed, with its config, state and cache."
    else
        echo "speck-edge removed; kept $CONF_DIR and the state/cache under /var (--purge deletes them)."
    fi
}

install() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than 3.11 (set PYTHON=...)"
    [[ -f "$SRC/pyproject.toml" && -f "$SRC/deploy/config/default.toml" ]] || die "no speck-edge checkout at $SRC"

    # The code: a venv owned by root, read-only to the services (numba caches to NUMBA_CACHE_DIR).
    install -d -m 0755 "$PREFIX"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir --upgrade pip
    # No extras: no torch (CPU-only runtime). The second call replaces the same version's files.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "$SRC"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir --no-deps --force-reinstall "$SRC"
    install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

    # The config: installed once, never overwritten (local edits survive updates).
    install -d -m 0755 "$CONF_DIR"
    if [[ ! -e "$CONF_DIR/config.toml" ]]; then
        install -m 0644 "$SRC/deploy/config/default.toml" "$CONF_DIR/config.toml"
    fi

    # The units and their drop-ins.
    install -m 0644 "$HERE/speck-edge@.service" "$HERE/speck-edge.target" "$UNIT_DIR/"
    rm -rf "$UNIT_DIR"/speck-edge@*.service.d
    local dropin
    for dropin in "$HERE"/speck-edge@*.service.d; do
        [[ -d $dropin ]] || continue
        install -d -m 0755 "$UNIT_DIR/$(basename "$dropin")"
        install -m 0644 "$dropin"/*.conf "$UNIT_DIR/$(basename "$dropin")/"
    done
    systemctl daemon-reload

    local was_active=no
    systemctl is-active --quiet speck-edge.target && was_active=yes
    systemctl enable --now speck-edge.target
    if [[ $was_active == yes ]]; then
        systemctl restart speck-edge.target  # PartOf=: restarts all five on the new code
    fi
    echo "speck-edge installed: systemctl status 'speck-edge@*'; metrics at http://127.0.0.1:8790/metrics"
}

case "${1:-}" in
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
[[ $EUID -eq 0 ]] || die "run as root (sudo $0 $*)"
case "${1:-}" in
    "") install ;;
    --uninstall) uninstall no ;;
    --purge) uninstall yes ;;
    *) die "unknown option $1 (--uninstall, --purge, --help)" ;;
esac
