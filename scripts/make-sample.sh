#!/usr/bin/env bash
# Builds samples/appliance.qcow2: a small appliance disk laid out as a
# CSR1000v's is (MBR, an ext2 "bootflash" with packages.conf, packages,
# first-boot artefacts and an NVRAM configuration), plus a FAT partition and
# sparse gaps, stored as a zlib-compressed qcow2 with an internal snapshot
# and a few clusters changed after it. Deterministic contents; no root needed.
# Needs: qemu-img, qemu-io, mke2fs, sfdisk, mkfs.fat, mcopy.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/samples/appliance.qcow2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# An IOS-XE (CSR1000v-like) bootflash as a lab repack leaves it: the
# provisioning file with its own sha1sum, the packages (stand-ins), first-boot
# artefacts, and an NVRAM image whose configuration adds a plaintext
# privilege-15 user and an EEM applet that copies the configuration away.
mkdir -p "$work/flash/.installer" "$work/flash/tracelogs" "$work/flash/eem"
body='#! /usr/binos/bin/packages_conf.sh

# sha1sum above - used to verify that this file is not corrupted.
#
# package.conf: provisioned software file for build 2019-07-12_04.27
#
boot  rp 0 0   rp_boot     csr1000v-rpboot.16.12.01b.SPA.pkg
iso   rp 0 0   rp_base     csr1000v-mono-universalk9.16.12.01b.SPA.pkg
'
sum=$(printf '%s' "$body" | sha1sum | cut -c1-40)
printf '%s' "$body" | sed "2a sha1sum: $sum" > "$work/flash/packages.conf"
seq 1 4000 | sed 's/^/rpboot stand-in /' > "$work/flash/csr1000v-rpboot.16.12.01b.SPA.pkg"
seq 1 20000 | sed 's/^/mono stand-in /' > "$work/flash/csr1000v-mono-universalk9.16.12.01b.SPA.pkg"
printf 'install state\n' > "$work/flash/.installer/install_state"
seq 1 20000 | sed 's/^/boot log line /' > "$work/flash/tracelogs/boot.log"
printf '::cisco::eem::event_register_timer watchdog time 3600\n' > "$work/flash/eem/sync.tcl"
{
  printf '\253\315\000\001\000\000\000\000'
  cat <<'CFG'
!
version 16.12
hostname lab-router
!
boot-start-marker
boot system bootflash:packages.conf
boot-end-marker
!
enable secret 9 $9$SXI7xHdFMZpsPE$TEfDCZHcBzFz9Kq6qjvtMlMoAJdUUPx0m6rCe6v4y5s
username admin privilege 15 secret 9 $9$4/3Hp8ZJ6sJrV.$y6CqOL9Nkm1Tq1m7rPxdhw9F0n3CkI0AXQ/Q9W4sZ1w
username lab privilege 15 password 0 lab
!
interface GigabitEthernet1
 ip address 192.0.2.1 255.255.255.0
!
ip http server
ip ssh version 2
!
event manager applet SYNC
 event timer watchdog time 3600
 action 1.0 cli command "enable"
 action 2.0 cli command "copy running-config tftp://198.51.100.7/lab.cfg"
!
event manager directory user policy "bootflash:/eem"
!
end
CFG
  head -c 4096 /dev/zero
} > "$work/flash/nvram_00001"

# 64 MiB disk: p1 ext2 (1 MiB .. 17 MiB), p2 FAT (33 MiB .. 41 MiB); gaps stay sparse.
disk="$work/disk.raw"
truncate -s 64M "$disk"
printf 'label: dos\nstart=2048, size=32768, type=83\nstart=67584, size=16384, type=c\n' | sfdisk -q "$disk"
mke2fs -q -t ext2 -L bootflash -d "$work/flash" -E root_owner=0:0 "$work/p1.img" 16M
dd if="$work/p1.img" of="$disk" bs=512 seek=2048 conv=notrunc status=none
mkfs.fat -C -n EFI -i 51564554 "$work/p2.img" 8192 >/dev/null
printf 'fs0:\\EFI\\BOOT\\BOOTX64.EFI\n' > "$work/startup.nsh"
mcopy -i "$work/p2.img" "$work/startup.nsh" ::/startup.nsh
dd if="$work/p2.img" of="$disk" bs=512 seek=67584 conv=notrunc status=none

rm -f "$out"
qemu-img convert -q -c -f raw -O qcow2 -o compression_type=zlib "$disk" "$out"
qemu-img snapshot -c factory "$out"
qemu-io -f qcow2 -c 'write -P 0x5a 50M 64k' -c 'write -z 20M 64k' "$out" >/dev/null
echo "wrote $out ($(stat -c %s "$out") bytes)"
