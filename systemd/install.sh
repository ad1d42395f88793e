#!/usr/bin/env bash
# Install or update the edge agent on Raspberry Pi OS bookworm, from this checkout.
#
# Idempotent: every step first looks at what is there and says "already present" when
# nothing needs doing, so running it twice changes nothing the second time.  A
# technician's /etc/edge-agent/agent.yaml is never overwritten.
#
# Output, one line per step:
#   would: ...            (--dry-run) the action that would be taken
#   doing: ...            the action being taken now
#   already present: ...  nothing to do
#   skip: ...             deliberately not done, with the reason
#   check passed: ...     agent.yaml passes `edge-agent check-config`
#   check failed: ...     it does not (the problems follow on stderr): the unit is not enabled or
#                         started, and install.sh exits 1 once everything else is in place
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: sudo systemd/install.sh [--dry-run] [--start] [--prefix DIR] [--no-venv]

Installs the edge agent from this checkout:
  - apt: python3-venv, python3-picamera2 and python3-lgpio (libcamera's Python bindings
    exist only as a Debian package, so the venv sees the system site-packages)
  - system user edge-agent (no login, home /var/lib/edge-agent) in groups gpio and video
  - venv /opt/edge-agent/venv with this project (pip install ".[pi]" at the versions in
    constraints.txt, plus requirements-nodeps.txt); skipped when the checkout has not
    changed since last time
  - /etc/edge-agent (root:edge-agent 0750) with agent.yaml copied from
    config/agent.example.yaml only if there is none, and a random whitelist.key
    (root 0600, handed to the service by LoadCredential=) only if there is none
  - /etc/systemd/system/edge-agent.service, daemon-reload
  - edge-agent check-config /etc/edge-agent/agent.yaml, then enable (and with --start, start)
    the unit only if it passes: a config that fails is never started

Options:
  --dry-run      print every action (prefixed "would: ") and change nothing
  --start        also start the service now (enable --now; restart if anything changed)
  --prefix DIR   stage the files under DIR (DIR/opt, DIR/etc, DIR/var) instead of /;
                 steps that act on the live system (apt, accounts, ownership,
                 systemctl) are skipped; the config is checked with DIR/etc/edge-agent
                 standing in for the credentials directory.  Also: EDGE_AGENT_PREFIX=DIR
  --no-venv      leave the Python environment alone (refresh config and unit only)
  -h, --help     this text
EOF
}

DRY_RUN=0
START=0
WITH_VENV=1
PREFIX="${EDGE_AGENT_PREFIX:-}"

while (($#)); do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --start) START=1 ;;
        --no-venv) WITH_VENV=0 ;;
        --prefix)
            [[ $# -ge 2 && -n "$2" ]] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
            PREFIX="$2"
            shift
            ;;
        --prefix=*) PREFIX="${1#--prefix=}" ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

PREFIX="${PREFIX%/}"
if [[ -n "$PREFIX" && "$PREFIX" != /* ]]; then
    PREFIX="$(pwd)/$PREFIX"
fi
LIVE=1  # acting on the running system (not staging under a prefix)
[[ -n "$PREFIX" ]] && LIVE=0

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE_USER=edge-agent
SERVICE_GROUPS=(gpio video)
# python3-picamera2 brings libcamera's Python bindings (no wheel exists) and python3-lgpio
# saves building lgpio from source; the venv sees both through --system-site-packages.
APT_PACKAGES=(python3-venv python3-picamera2 python3-lgpio)
UNIT_NAME=edge-agent.service

OPT_DIR="$PREFIX/opt/edge-agent"
VENV_DIR="$OPT_DIR/venv"
ETC_DIR="$PREFIX/etc/edge-agent"
UNIT_DIR="$PREFIX/etc/systemd/system"
STATE_DIR="$PREFIX/var/lib/edge-agent"
HOME_DIR=/var/lib/edge-agent  # the account's home as seen on the target system
INSTALL_STAMP="$VENV_DIR/.edge-agent-source.sha256"

if ((LIVE && !DRY_RUN)) && [[ $EUID -ne 0 ]]; then
    echo "install.sh: run as root (sudo), or use --dry-run / --prefix DIR" >&2
    exit 1
fi

CHANGED=0  # anything changed this run: decides whether --start restarts a running service
CONFIG_OK=1  # agent.yaml passes check-config (or could not be checked yet in a dry run)
CONFIG_FAILED=0  # the check ran and failed: exit 1 at the end

# act "description" command...: show the step, run it unless --dry-run.
act() {
    local description="$1"
    shift
    CHANGED=1
    if ((DRY_RUN)); then
        echo "would: $description"
    else
        echo "doing: $description"
        "$@"
    fi
}
present() { echo "already present: $*"; }
skip() { echo "skip: $*"; }

# stat_is PATH MODE [OWNER:GROUP]: does PATH have exactly this mode (and owner, when live)?
stat_is() {
    local path="$1" mode="$2" owner="${3:-}"
    [[ -e "$path" ]] || return 1
    [[ "$(stat -c '%a' "$path")" == "${mode#0}" ]] || return 1
    [[ -z "$owner" ]] || [[ "$(stat -c '%U:%G' "$path")" == "$owner" ]]
}

# ensure_mode PATH MODE OWNER:GROUP: fix mode (and, when live, ownership) of an existing path.
ensure_mode() {
    local path="$1" mode="$2" owner="$3"
    if ((LIVE)); then
        stat_is "$path" "$mode" "$owner" && { present "$path is $mode $owner"; return; }
        act "chown $owner $path && chmod $mode $path" chown_chmod "$path" "$mode" "$owner"
    else
        stat_is "$path" "$mode" && { present "$path is $mode"; return; }
        act "chmod $mode $path" chmod "$mode" "$path"
    fi
}
chown_chmod() { chown "$3" "$1" && chmod "$2" "$1"; }

# ensure_dir DIR MODE OWNER:GROUP
ensure_dir() {
    local dir="$1" mode="$2" owner="$3"
    if [[ -d "$dir" ]]; then
        ensure_mode "$dir" "$mode" "$owner"
    elif ((LIVE)); then
        act "install -d -m $mode -o ${owner%:*} -g ${owner#*:} $dir" \
            install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$dir"
    else
        act "install -d -m $mode $dir" install -d -m "$mode" "$dir"
    fi
}

# Hash of everything pip installs from the checkout, so an unchanged checkout is not reinstalled
# (pip always rebuilds a local directory, which would make every run "change" the venv).
source_digest() {
    (
        cd "$REPO_ROOT"
        local sources=() path
        for path in agent drivers models setup.cfg pyproject.toml constraints.txt requirements-nodeps.txt README.md; do
            [[ -e "$path" ]] && sources+=("$path")
        done
        find "${sources[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
            LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1
    )
}

step_apt() {
    if ((!LIVE)); then
        skip "apt-get install ${APT_PACKAGES[*]} (--prefix: live system untouched)"
        return
    fi
    local missing=() package
    for package in "${APT_PACKAGES[@]}"; do
        if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            present "apt package $package"
        else
            missing+=("$package")
        fi
    done
    if ((${#missing[@]})); then
        act "apt-get update" apt-get update
        act "apt-get install -y --no-install-recommends ${missing[*]}" \
            apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

step_account() {
    if ((!LIVE)); then
        skip "groups ${SERVICE_GROUPS[*]} and user $SERVICE_USER (--prefix: live system untouched)"
        return
    fi
    local group
    for group in "${SERVICE_GROUPS[@]}"; do
        if getent group "$group" >/dev/null; then
            present "group $group"
        else
            act "groupadd --system $group" groupadd --system "$group"
        fi
    done
    local groups_csv
    groups_csv="$(IFS=,; echo "${SERVICE_GROUPS[*]}")"
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        act "useradd --system --user-group --home-dir $HOME_DIR --no-create-home --shell /usr/sbin/nologin --groups $groups_csv $SERVICE_USER" \
            useradd --system --user-group --home-dir "$HOME_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "edge access-control agent" \
            --groups "$groups_csv" "$SERVICE_USER"
        return
    fi
    present "user $SERVICE_USER"
    local member_of
    member_of=" $(id -nG "$SERVICE_USER") "
    for group in "${SERVICE_GROUPS[@]}"; do
        if [[ "$member_of" == *" $group "* ]]; then
            present "$SERVICE_USER in group $group"
        else
            act "usermod -aG $group $SERVICE_USER" usermod -aG "$group" "$SERVICE_USER"
        fi
    done
}

step_venv() {
    if ((!WITH_VENV)); then
        skip "Python environment in $VENV_DIR (--no-venv)"
        return
    fi
    ensure_dir "$OPT_DIR" 0755 root:root
    if [[ -x "$VENV_DIR/bin/python" ]]; then
        present "venv $VENV_DIR"
    else
        act "python3 -m venv --system-site-packages $VENV_DIR" \
            python3 -m venv --system-site-packages "$VENV_DIR"
    fi
    local digest
    digest="$(source_digest)"
    if [[ -f "$INSTALL_STAMP" && "$(cat "$INSTALL_STAMP")" == "$digest" ]]; then
        present "edge-agent from $REPO_ROOT in $VENV_DIR (source sha256 $digest)"
        return
    fi
    # constraints.txt: the versions CI tested and bench/pi_cpus.sh ran on Pi 4 and 5 CPUs.
    act "(cd $REPO_ROOT && $VENV_DIR/bin/pip install -c constraints.txt '.[pi]')" \
        bash -c 'cd "$1" && "$2/bin/pip" install -c constraints.txt ".[pi]"' _ "$REPO_ROOT" "$VENV_DIR"
    act "(cd $REPO_ROOT && $VENV_DIR/bin/pip install --no-deps -r requirements-nodeps.txt)" \
        bash -c 'cd "$1" && "$2/bin/pip" install --no-deps -r requirements-nodeps.txt' _ "$REPO_ROOT" "$VENV_DIR"
    act "record the checkout's source sha256 in $INSTALL_STAMP" write_file "$INSTALL_STAMP" "$digest"
}
write_file() { printf '%s\n' "$2" >"$1"; }

step_state_dir() {
    ensure_dir "$STATE_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
}

step_config() {
    ensure_dir "$ETC_DIR" 0750 "root:$SERVICE_USER"
    local config="$ETC_DIR/agent.yaml" example="$REPO_ROOT/config/agent.example.yaml"
    if [[ -e "$config" ]]; then
        present "$config (kept as it is)"
    else
        [[ -f "$example" ]] || ((DRY_RUN)) || { echo "install.sh: missing $example" >&2; exit 1; }
        act "cp $example $config" install -m 0640 "$example" "$config"
    fi
    if [[ -e "$config" ]]; then
        ensure_mode "$config" 0640 "root:$SERVICE_USER"
    fi

    # The key never goes in agent.yaml; systemd hands it over with LoadCredential=.
    local key="$ETC_DIR/whitelist.key"
    if [[ -e "$key" ]]; then
        present "$key (kept as it is)"
        ensure_mode "$key" 0600 root:root
    else
        act "create random $key (32 bytes, urlsafe base64, mode 0600)" new_key "$key"
    fi
}
new_key() {
    (umask 077 && head -c 32 /dev/urandom | base64 | tr '+/' '-_' >"$1")
}

step_unit() {
    local source="$REPO_ROOT/systemd/$UNIT_NAME" target="$UNIT_DIR/$UNIT_NAME"
    ensure_dir "$UNIT_DIR" 0755 root:root
    if [[ -f "$target" ]] && cmp -s "$source" "$target"; then
        present "$target (same as the checkout)"
    else
        act "install -m 0644 $source $target" install -m 0644 "$source" "$target"
    fi
}

# The unit is enabled and started only with a config that passes check-config: the agent started
# with a broken one exits 78 (or runs with faults), and a technician learns it here, not on the street.
step_check_config() {
    local config="$ETC_DIR/agent.yaml" checker="$VENV_DIR/bin/edge-agent" output
    if [[ ! -e "$config" || ! -x "$checker" ]]; then
        if ((DRY_RUN)); then
            echo "would: $checker check-config $config (the unit is enabled and started only if it passes)"
        else
            CONFIG_OK=0
            skip "$checker check-config $config: the agent is not installed in $VENV_DIR (run without --no-venv)"
        fi
        return
    fi
    # Live, the whitelist key's $CREDENTIALS_DIRECTORY means /etc/edge-agent, as for a technician's sudo
    # shell; staged, the staged /etc/edge-agent stands in for it.
    local credentials=(-u CREDENTIALS_DIRECTORY)
    ((LIVE)) || credentials=("CREDENTIALS_DIRECTORY=$ETC_DIR")
    if output="$(env "${credentials[@]}" "$checker" check-config "$config" 2>&1)"; then
        echo "check passed: $config (edge-agent check-config)"
    else
        CONFIG_OK=0
        CONFIG_FAILED=1
        echo "check failed: $config does not pass edge-agent check-config; $UNIT_NAME will not be enabled or started"
        printf '%s\n' "$output" | sed 's/^/    /' >&2
        echo "install.sh: fix $config (the lines above say which key and file), check it with" \
            "\`sudo $checker check-config\`, then run install.sh again" >&2
    fi
}

step_systemctl() {
    if ((!LIVE)); then
        skip "systemctl daemon-reload / enable $UNIT_NAME (--prefix: live system untouched)"
        return
    fi
    # Without systemd as PID 1 (a chroot building an image) only the enable symlinks can be made.
    local booted=0
    [[ -d /run/systemd/system ]] && booted=1
    if ((!booted)); then
        skip "systemctl daemon-reload (systemd is not running)"
    elif ((CHANGED)) || [[ "$(systemctl show -P NeedDaemonReload "$UNIT_NAME" 2>/dev/null)" == yes ]]; then
        act "systemctl daemon-reload" systemctl daemon-reload
    else
        present "systemd has loaded the current $UNIT_NAME"
    fi

    if ((!CONFIG_OK)); then
        skip "systemctl enable/start $UNIT_NAME ($ETC_DIR/agent.yaml has not passed check-config)"
        return
    fi
    local changed_before_enable=$CHANGED
    if [[ "$(systemctl is-enabled "$UNIT_NAME" 2>/dev/null || true)" == enabled ]]; then
        present "$UNIT_NAME enabled"
    elif ((START && booted)); then
        act "systemctl enable --now $UNIT_NAME" systemctl enable --now "$UNIT_NAME"
        return
    else
        act "systemctl enable $UNIT_NAME" systemctl enable "$UNIT_NAME"
    fi

    ((START)) || return 0
    if ((!booted)); then
        skip "systemctl start $UNIT_NAME (systemd is not running)"
    elif ! systemctl is-active --quiet "$UNIT_NAME"; then
        act "systemctl start $UNIT_NAME" systemctl start "$UNIT_NAME"
    elif ((changed_before_enable)); then
        act "systemctl restart $UNIT_NAME (files changed)" systemctl restart "$UNIT_NAME"
    else
        present "$UNIT_NAME running"
    fi
}

((DRY_RUN)) && echo "dry run: nothing will be changed (checkout $REPO_ROOT, prefix ${PREFIX:-/})"
step_apt
step_account
step_venv
step_state_dir
step_config
step_unit
step_check_config
step_systemctl
if ((DRY_RUN)); then
    echo "dry run finished"
elif ((CHANGED)); then
    echo "installed"
else
    echo "nothing to do: everything already present"
fi
((!CONFIG_FAILED)) || exit 1
