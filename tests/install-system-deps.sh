#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those missing.
# The tests start real servers and tools from these packages themselves.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# command-or-file -> package
check() {
    local probe=$1 pkg=$2
    if [[ $probe == /* ]]; then
        compgen -G "$probe" >/dev/null || need+=("$pkg")
    else
        have_cmd "$probe" || need+=("$pkg")
    fi
}

check '/usr/lib/postgresql/*/bin/initdb' postgresql   # catalog tests on a real PostgreSQL
check setfacl acl                                       # ACL round trips in the file source
check setfattr attr                                     # extended attributes
check qemu-img qemu-utils                               # disk images for the image path
check zstd zstd
check /usr/lib/python3/dist-packages/nbd.py python3-libnbd   # qcow2 reads in the imagefile plugin
check tgtd tgt                                          # the virtual tape library
check /usr/include/iscsi/iscsi.h libiscsi-dev           # iSCSI transport (and its struct-layout test)
check gcc gcc
check /usr/bin/time time                                # peak memory of benchmark peers
check restic restic                                     # benchmark peers
check borg borgbackup
check go golang-go                                      # builds the vcsim test program
check /usr/share/gocode/src/github.com/vmware/govmomi/simulator golang-github-vmware-govmomi-dev  # vSphere simulator
check libvirtd libvirt-daemon                          # libvirt plugin tests: a private libvirtd
check /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so libvirt-daemon-driver-qemu
check qemu-system-x86_64 qemu-system-x86                # the domains the libvirt tests back up
check /usr/include/libvirt/libvirt.h libvirt-dev       # builds libvirt-python
check pkg-config pkg-config
check nbdinfo libnbd-bin
check /usr/bin/chromium chromium                          # browser tests of the web panel (Playwright)
check nbdkit nbdkit                                     # VDDK transport (vmware plugin)
check /usr/include/nbdkit-plugin.h nbdkit-plugin-dev    # builds the vddk plugin stand-in
check mariadbd mariadb-server                            # mariadb plugin tests: a private server
check mariadb-backup mariadb-backup                     # physical backups (and mbstream)
check mariadb-binlog mariadb-client                     # binlog archiving, dumps, replay
check mkntfs ntfs-3g                                    # imagefs tests: NTFS test disks (mkntfs, ntfscp)
check mkfs.xfs xfsprogs                                 # imagefs tests: XFS test disks
check mkfs.fat dosfstools                               # imagefs tests: FAT test disks
check mcopy mtools
check sfdisk fdisk                                      # imagefs tests: partition tables in plain files
check mkfs.btrfs btrfs-progs                            # imagefs tests: btrfs test disks

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
