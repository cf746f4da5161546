#!/usr/bin/env bash
# Builds samples/appliance.qcow2: a small appliance-like disk (MBR, an ext2
# "bootflash" partition with config files and an SSH key, a FAT partition,
# sparse gaps), stored as a zlib-compressed qcow2 with an internal snapshot
# and a few clusters changed after it. Deterministic contents; no root needed.
# Needs: qemu-img, qemu-io, mke2fs, sfdisk, mkfs.fat, mcopy.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/samples/appliance.qcow2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/flash/config" "$work/flash/root/.ssh" "$work/flash/boot"
cat > "$work/flash/config/startup-config" <<'CFG'
hostname lab-router
interface GigabitEthernet1
 ip address 192.0.2.1 255.255.255.0
username admin privilege 15 secret 9 $9$examplehashonly
ip ssh version 2
CFG
printf 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKeyForQvetSampleOnly demo@lab\n' > "$work/flash/root/.ssh/authorized_keys"
printf 'root:x:0:0:root:/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n' > "$work/flash/passwd"
seq 1 20000 | sed 's/^/boot log line /' > "$work/flash/boot/boot.log"
head -c 65536 /dev/zero | tr '\0' 'Q' > "$work/flash/boot/packages.conf"

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
