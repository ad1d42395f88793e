#!/usr/bin/env bash
# Runs the node's Python stack on emulated Raspberry Pi CPUs and compares it with this machine's run.
#
# A wheel built for a newer Arm than the Pi's dies on the Pi with SIGILL, often at import:
# onnxruntime 1.21.0 did so on every Pi 4 (Cortex-A72, Armv8.0). This machine is not an Arm, so:
#   - Debian bookworm's arm64 Python 3.11 (debootstrap, first stage only) runs under qemu-user with
#     -cpu cortex-a72 (Pi 4) and -cpu cortex-a76 (Pi 5), which refuse the instructions those cores lack;
#   - the aarch64 wheels pip installs on a Pi (setup.cfg's requirements within constraints.txt, and
#     requirements-nodeps.txt) are installed for that Python with pip's --platform;
#   - /proc/cpuinfo and /sys/devices/system/cpu are the Pi's, in a mount namespace of this script's
#     own: onnxruntime's CPU probe crashes on the x86 ones that qemu-user shows through;
#   - bench/pi_smoke.py (imports, AES-GCM, Ed25519, pydantic, SQLite, plate reads, face descriptors)
#     runs natively and on both CPUs; any crash or difference fails the check.
#
# Usage: bench/pi_cpus.sh   (as root, or it asks sudo; `make check-pi`). About 3 minutes a CPU on top
# of the first run's downloads (~400 MB into var/pi-check; PI_CHECK_DIR moves it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || { echo "run as root: a mount namespace shows the Pi's /proc/cpuinfo" >&2; exit 1; }
    exec sudo --preserve-env=PI_CHECK_DIR,DEBIAN_MIRROR "$0" "$@"
fi

PROJECT=$PWD
WORK=$(realpath -m "${PI_CHECK_DIR:-var/pi-check}")
ROOTFS=$WORK/rootfs
SITE=$WORK/site
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PY=$PROJECT/.venv/bin/python
CPUS=(cortex-a72 cortex-a76)
[[ -x $HOST_PY ]] || { echo "no $HOST_PY: run make setup first (or make check-pi)" >&2; exit 1; }
mkdir -p "$WORK"

missing=()
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
if ((${#missing[@]})); then
    echo "installing from Debian's packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x $ROOTFS/usr/bin/python3.11 ]]; then
    echo "arm64 Python from Debian bookworm into $ROOTFS"
    rm -rf "$ROOTFS"
    /usr/sbin/debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 \
        bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log"
    # The first stage unpacks only the base; the rest waits for a second stage that would have to run
    # arm64 programs. Unpacking is all qemu-user needs.
    for deb in "$ROOTFS"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$ROOTFS"; done
fi

# Reinstalled whenever what pip would install changes.
digest=$(cat setup.cfg constraints.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$SITE/.installed" 2>/dev/null)" != "$digest" ]]; then
    echo "aarch64 wheels into $SITE"
    rm -rf "$SITE" "$WORK/wheels"
    # The project's own wheel (pure Python) lets pip read setup.cfg's requirements as it does on a Pi;
    # face-recognition-models is a source distribution of model files only, so a wheel made here is
    # the same on every machine. The checkout's code comes first on pi_smoke.py's path all the same.
    "$HOST_PY" -m pip wheel -q --no-deps -c constraints.txt -w "$WORK/wheels" . face-recognition-models
    platform=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none)
    for tag in manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_24_aarch64 manylinux_2_27_aarch64 \
        manylinux_2_28_aarch64 manylinux_2_34_aarch64 manylinux_2_36_aarch64 linux_aarch64; do
        platform+=(--platform "$tag")
    done
    "$HOST_PY" -m pip install -q --target "$SITE" "${platform[@]}" --find-links "$WORK/wheels" \
        -c constraints.txt "$WORK"/wheels/edge_agent-*.whl
    "$HOST_PY" -m pip install -q --target "$SITE" --no-deps -r requirements-nodeps.txt
    echo "$digest" >"$SITE/.installed"
fi

# What each Pi's kernel prints: Cortex-A72 r0p3 (Pi 4), Cortex-A76 r4p1 (Pi 5); four cores each.
write_cpuinfo() {  # write_cpuinfo FILE PART VARIANT REVISION FEATURES MODEL
    local n
    for n in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$n" "$5"
        printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$3" "$2" "$4"
    done >"$1"
    printf 'Model\t\t: %s\n' "$6" >>"$1"
}
write_cpuinfo "$WORK/cpuinfo-cortex-a72" 0xd08 0x0 3 "fp asimd evtstrm crc32 cpuid" "Raspberry Pi 4 Model B Rev 1.4"
write_cpuinfo "$WORK/cpuinfo-cortex-a76" 0xd0b 0x4 1 \
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
    "Raspberry Pi 5 Model B Rev 1.0"
SYS_CPU=$WORK/sys-cpu
rm -rf "$SYS_CPU"
for n in 0 1 2 3; do
    mkdir -p "$SYS_CPU/cpu$n/topology"
    for f in core_id thread_siblings_list core_cpus_list; do echo "$n" >"$SYS_CPU/cpu$n/topology/$f"; done
    for f in core_siblings_list cluster_cpus_list package_cpus_list; do echo 0-3 >"$SYS_CPU/cpu$n/topology/$f"; done
    for f in physical_package_id cluster_id; do echo 0 >"$SYS_CPU/cpu$n/topology/$f"; done
done
for f in possible present online; do echo 0-3 >"$SYS_CPU/$f"; done
echo >"$SYS_CPU/offline"

echo "native run"
"$HOST_PY" bench/pi_smoke.py >"$WORK/native.json"
for cpu in "${CPUS[@]}"; do
    echo "emulated $cpu run (in the background)"
    (
        start=$SECONDS
        set +e
        unshare --mount --propagation private bash -c '
            mount --bind "$1" /proc/cpuinfo && mount --bind "$2" /sys/devices/system/cpu &&
            PYTHONPATH="$3" exec qemu-aarch64 -cpu "$4" -L "$5" "$5/usr/bin/python3.11" bench/pi_smoke.py' \
            _ "$WORK/cpuinfo-$cpu" "$SYS_CPU" "$SITE" "$cpu" "$ROOTFS" >"$WORK/$cpu.json" 2>"$WORK/$cpu.err"
        echo "$? $((SECONDS - start))" >"$WORK/$cpu.status"
    ) &
done
wait

"$HOST_PY" bench/pi_smoke.py --compare "$WORK" "${CPUS[@]}"
