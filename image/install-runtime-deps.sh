#!/usr/bin/env bash
# Installs the Debian packages the appliance itself needs to install and run (not the
# test peers: tests/install-system-deps.sh adds those), only those missing.
# `make run` calls it; the appliance image build installs the same list.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }

check() {
    local probe=$1 pkg=$2
    if [[ $probe == /* ]]; then
        compgen -G "$probe" >/dev/null || need+=("$pkg")
    else
        have_cmd "$probe" || need+=("$pkg")
    fi
}

check gcc gcc                                           # builds libvirt-python at install
check pkg-config pkg-config
check /usr/include/libvirt/libvirt.h libvirt-dev        # the libvirt plugin's bindings
check '/usr/lib/*/libiscsi.so.7' libiscsi7             # tape libraries over iSCSI (hardware/)
check /usr/lib/python3/dist-packages/nbd.py python3-libnbd   # NBD reads (imagefile, libvirt, VDDK)
check qemu-img qemu-utils                               # qcow2 images (imagefile plugin)

if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${need[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
