#!/usr/bin/env bash
# Print the `systemd-analyze security` exposure of systemd/edge-agent.service (0 = locked
# down, 10 = unprotected; target <= 3.0), beside a baseline: the same ExecStart with no
# hardening at all, analysed by the same systemd in the same run.
#
#   bench/systemd_exposure.sh            figures only
#   bench/systemd_exposure.sh --details  also the per-setting table for the agent's unit
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UNIT="$REPO_ROOT/systemd/edge-agent.service"

command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed" >&2; exit 1; }
echo "systemd: $(systemd-analyze --version | head -n1)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# The baseline must be named like a service too; only its ExecStart is shared with the agent.
grep -E '^ExecStart=' "$UNIT" | { echo '[Service]'; cat; } >"$WORK/baseline-unhardened.service"

exposure() {
    # Last line: "→ Overall exposure level for NAME: 1.6 OK 🙂"
    systemd-analyze security --offline=true --no-pager "$1" 2>/dev/null |
        sed -n 's/.*Overall exposure level for \([^:]*\): \([0-9.]*\) \([A-Z]*\).*/\2 \3 (\1)/p'
}

echo "baseline (no hardening):  $(exposure "$WORK/baseline-unhardened.service")"
echo "edge-agent.service:       $(exposure "$UNIT")"
echo "command: systemd-analyze security --offline=true $UNIT"
if [[ "${1:-}" == --details ]]; then
    systemd-analyze security --offline=true --no-pager "$UNIT"
fi
