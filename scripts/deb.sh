#!/usr/bin/env bash
# Builds a Debian package of qvet: the binary, a man page for qvet and for
# every subcommand (`man qvet-audit`), bash/zsh/fish completions, the README
# and the licence notice. Needs only dpkg-deb (every Debian/Ubuntu has it).
#
#   bash scripts/deb.sh            # release build, writes target/deb/qvet_<version>_<arch>.deb
#   sudo apt install ./target/deb/qvet_*.deb
#
# Environment: QVET_BIN   use this binary instead of building one (the tests do)
#              DEB_OUT    output directory (target/deb)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dpkg-deb >/dev/null || { echo "deb: dpkg-deb not found (Debian/Ubuntu only)" >&2; exit 1; }
bin=${QVET_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p qvet
  bin=target/release/qvet
fi
out=${DEB_OUT:-target/deb}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
root="$stage/qvet"
install -D -m 0755 "$bin" "$root/usr/bin/qvet"
mkdir -p "$root/usr/share/man/man1"
for page in $("$bin" man --list); do
  sub=${page#qvet}; sub=${sub#-}
  if [ -z "$sub" ]; then "$bin" man; else "$bin" man "$sub"; fi | gzip -9n > "$root/usr/share/man/man1/$page.1.gz"
done
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$bin" completions bash > "$root/usr/share/bash-completion/completions/qvet"
"$bin" completions zsh > "$root/usr/share/zsh/vendor-completions/_qvet"
"$bin" completions fish > "$root/usr/share/fish/vendor_completions.d/qvet.fish"
install -d "$root/usr/share/doc/qvet"
gzip -9n < README.md > "$root/usr/share/doc/qvet/README.md.gz"
cat > "$root/usr/share/doc/qvet/copyright" <<TXT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: qvet
License: MIT or Apache-2.0
TXT
size=$(du -ks "$root" | cut -f1)
install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<TXT
Package: qvet
Version: $version
Architecture: $arch
Maintainer: qvet developers <qvet@example.invalid>
Installed-Size: $size
Depends: libc6
Recommends: qemu-utils
Section: admin
Priority: optional
Homepage: https://example.invalid/qvet
Description: vet virtual-machine disk images offline
 qvet reads qcow2 and raw disk images read-only, without root or a VM, and
 says what they are, whether they are intact and a vendor's original, and
 what was changed or planted: accounts, keys, persistence, network-appliance
 configurations (IOS-XE, EOS, VyOS, FortiOS, RouterOS).
TXT
mkdir -p "$out"
deb="$out/qvet_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
