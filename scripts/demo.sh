#!/usr/bin/env bash
# Builds qvet and runs its main job on the shipped sample image: the audit
# (verdict, findings with evidence, coverage), then which OS it holds
# (inspect), what the image is (info),
# whether it is intact (check), whether it is a known original (verify), what
# is inside (fs), where its data lives (map) and its guest bytes (convert),
# checked against qemu-img, and a smaller copy (compact, with its proof).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cargo >/dev/null || { echo "demo: cargo not found; install Rust with rustup first" >&2; exit 1; }
command -v qemu-img >/dev/null || need+=(qemu-utils)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p qvet
qvet=target/release/qvet
img=samples/appliance.qcow2
echo "== qvet audit $img   (a throw-away catalog: the built-in GNS3 registry only)"
audit_cat=$(mktemp -d)
$qvet audit --catalog "$audit_cat/catalog.sqlite" "$img" || echo "(exit code $?: 2 = a finding at or above --fail-on)"
rm -rf "$audit_cat"
echo
echo "== qvet inspect $img   (which OS, with the evidence)"
$qvet inspect "$img"
echo
echo "== qvet info $img"
$qvet info "$img"
echo
echo "== qvet check $img"
$qvet check "$img" || echo "(exit code $?)"
echo
echo "== qvet verify $img   (a throw-away catalog: the built-in GNS3 registry only)"
cat_dir=$(mktemp -d)
$qvet verify --catalog "$cat_dir/catalog.sqlite" "$img" || echo "(exit code $?: 3 = unknown)"
rm -rf "$cat_dir"
echo
echo "== qvet fs $img"
$qvet fs "$img"
echo
echo "== qvet ls -l -R $img:p1:/   (the ext2 bootflash, read without mounting)"
$qvet ls -l -R "$img:p1:/"
echo
echo "== qvet cat $img:p1:/packages.conf"
$qvet cat "$img:p1:/packages.conf"
echo
echo "== qvet map $img"
$qvet map "$img"
echo
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
$qvet convert -O raw "$img" "$tmp/qvet.raw"
qemu-img convert -O raw "$img" "$tmp/qemu.raw"
echo "== guest view: qvet $(sha256sum < "$tmp/qvet.raw" | cut -c1-16)…  qemu-img $(sha256sum < "$tmp/qemu.raw" | cut -c1-16)…"
cmp -s "$tmp/qvet.raw" "$tmp/qemu.raw" && echo "identical to qemu-img convert -O raw"
$qvet map --output json "$img" | cmp -s - <(qemu-img map --output=json "$img") && echo "map JSON identical to qemu-img map --output=json"
echo
echo "== qvet compact $img   (refused: an internal snapshot pins old clusters)"
$qvet compact "$img" "$tmp/small.qcow2" || echo "(exit code $?)"
echo
echo "== qvet compact -c --drop-snapshots $img   (free space dropped, written, then proven)"
$qvet compact -c --drop-snapshots "$img" "$tmp/small.qcow2"
qemu-img check -q "$tmp/small.qcow2" && echo "qemu-img check: no errors, no leaks"
echo "sizes: $(stat -c %s "$img") bytes in, $(stat -c %s "$tmp/small.qcow2") bytes out"
