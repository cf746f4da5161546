#!/usr/bin/env bash
# Runs every check of the workspace on a fresh Debian/Ubuntu machine:
#   1. installs the external tools the integration tests drive (qemu-img and
#      qemu-io as the oracle; sfdisk, mke2fs, mkfs.fat, mtools, xorriso,
#      mksquashfs, zstd to build test images; chromium to render the HTML
#      report; the PostgreSQL server, whose throw-away clusters the catalog
#      tests start themselves) if any is missing,
#   2. cargo fmt --check, cargo clippy -D warnings, cargo test.
# Exits non-zero if anything fails. Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# sfdisk, mke2fs and mkfs.fat live in /usr/sbin, which is not on a normal
# user's PATH on Debian; the tests look tools up on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# tool -> Debian package that provides it
tools=(
  "qemu-img:qemu-utils"
  "qemu-io:qemu-utils"
  "mke2fs:e2fsprogs"
  "sfdisk:fdisk"
  "mcopy:mtools"
  "mkfs.fat:dosfstools"
  "xorriso:xorriso"
  "mksquashfs:squashfs-tools"
  "zstd:zstd"
  "debugfs:e2fsprogs"
  "dpkg-deb:dpkg"
  "chromium:chromium"
  "cryptsetup:cryptsetup-bin"
)

missing_pkgs=()
for entry in "${tools[@]}"; do
  tool=${entry%%:*}
  pkg=${entry#*:}
  if ! command -v "$tool" >/dev/null 2>&1; then
    case " ${missing_pkgs[*]-} " in
      *" $pkg "*) ;;
      *) missing_pkgs+=("$pkg") ;;
    esac
  fi
done

# PostgreSQL's server binaries are not on PATH on Debian
# (/usr/lib/postgresql/<version>/bin); the tests find them there.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing_pkgs+=("postgresql")
fi

if [ ${#missing_pkgs[@]} -gt 0 ]; then
  echo "test.sh: installing missing packages: ${missing_pkgs[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: apt-get not found; install these packages by hand: ${missing_pkgs[*]}" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "test.sh: not root and sudo not found; install as root: ${missing_pkgs[*]}" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
fi

# Rust toolchain (rustup installs cargo into ~/.cargo/bin).
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  cat >&2 <<'EOF'
test.sh: cargo not found. Install a Rust toolchain first, for example:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile default
then open a new shell (or `source ~/.cargo/env`) and run this script again.
EOF
  exit 1
fi
for component in fmt clippy; do
  if ! cargo "$component" --version >/dev/null 2>&1; then
    echo "test.sh: 'cargo $component' is missing; install it with: rustup component add ${component/fmt/rustfmt}" >&2
    exit 1
  fi
done

echo "test.sh: $(cargo --version); $(qemu-img --version | head -n1)"

failed=()
step() {
  local name=$1
  shift
  echo
  echo "==> $name: $*"
  if "$@"; then
    echo "==> $name: ok"
  else
    echo "==> $name: FAILED" >&2
    failed+=("$name")
  fi
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step test cargo test --workspace --no-fail-fast
# Every fuzz target for a short time box (FUZZ_SECONDS=0 skips); crashes are
# saved under fuzz/artifacts/ and replayed by `cargo test` from then on.
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  step fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash scripts/fuzz.sh
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED steps: ${failed[*]}" >&2
  exit 1
fi
echo "test.sh: all checks passed (fmt, clippy, test, fuzz)"
