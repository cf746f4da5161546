#!/usr/bin/env bash
# Benchmark (not a test): `qvet digest` against coreutils and qemu-img, side by
# side, on the images of scripts/bench-convert.sh (a 1.5 GiB ext4 disk holding
# ~1130 MiB of real files, as raw and as a zlib-compressed qcow2):
#
#   (a) md5+sha1+sha256+sha512 of the 1.5 GiB raw file, one read, in parallel
#       vs `md5sum; sha1sum; sha256sum; sha512sum` run one after another
#       (target <= 0.30);
#   (b) `--content` (sha256 of the guest view + manifest root) of the zlib
#       qcow2 vs `qemu-img convert -O raw IMG OUT` + `sha256sum OUT`
#       (target <= 0.25);
#   (c) `--content=root` (manifest root only) vs the same (target <= 0.10).
#
# qemu-img cannot write a raw image to a pipe (`-` is taken as a file name and
# /dev/stdout fails with "Could not resize file"), so the reference converts
# to a file in BENCH_DIR/out and hashes that; the output is removed and dirty
# pages are flushed (untimed) before each run.
#
# Each command runs once untimed to warm the page cache equally, then N times
# alternating; the best wall-clock time of each is reported, and the answers
# are checked equal (qvet's digests vs the tools').
#
# Environment:
#   BENCH_DIR    work dir with the images (built by bench-convert.sh if missing)
#                                                          (/tmp/qvet-bench)
#   BENCH_RUNS   timed runs per command (best of)          (3)
#   QVET_BIN     a prebuilt qvet binary (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

W=${BENCH_DIR:-/tmp/qvet-bench}
N=${BENCH_RUNS:-3}
DATA_MIB=1130
DISK_MIB=1536

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in qemu-img md5sum sha1sum sha256sum sha512sum; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-utils coreutils)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
[ "$N" -ge 1 ] 2>/dev/null || die "BENCH_RUNS must be a positive integer"

if [ -n "${QVET_BIN:-}" ]; then
  qvet=$QVET_BIN
else
  log "building qvet (release)"
  cargo build --release -q -p qvet
  qvet=$root/target/release/qvet
fi

raw=$W/img/disk-${DISK_MIB}M-${DATA_MIB}M.raw
zlib=$W/img/disk-${DISK_MIB}M-${DATA_MIB}M.zlib.qcow2
if [ ! -s "$raw" ] || [ ! -s "$zlib" ]; then
  log "building the images with scripts/bench-convert.sh (one convert timing run)"
  BENCH_DIR=$W BENCH_IMAGES=zlib BENCH_RUNS=1 BENCH_DATA_MIB=$DATA_MIB BENCH_DISK_MIB=$DISK_MIB \
    bash scripts/bench-convert.sh >/dev/null
fi
mkdir -p "$W/out"
ref=$W/out/digest-ref.raw

# Runs "$@" under /usr/bin/time; prints "seconds maxrss_kib"; stdout of the
# command goes to $W/out/last.out.
timed() {
  local t
  t=$(mktemp "$W/time.XXXXXX")
  /usr/bin/time -f '%e %M' -o "$t" "$@" >"$W/out/last.out"
  tail -n 1 "$t"
  rm -f "$t"
}
coreutils4() { md5sum "$raw"; sha1sum "$raw"; sha256sum "$raw"; sha512sum "$raw"; }
qemu_sha() { qemu-img convert -O raw "$zlib" "$ref" && sha256sum "$ref"; }
export -f coreutils4 qemu_sha
export raw zlib ref
prep_qemu() { rm -f "$ref"; sync; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 > b + 0) ? a : b }'; }

# --- (a) file digests ------------------------------------------------------------
log "(a) file digests of $(du -h --apparent-size "$raw" | cut -f1) raw file: warming up"
timed bash -c coreutils4 >/dev/null
want=$(awk '{ print $1 }' "$W/out/last.out" | tr '\n' ' ')
timed "$qvet" digest -q --algo md5,sha1,sha256,sha512 --output sums "$raw" >/dev/null
got=$(grep -v '^#' "$W/out/last.out" | awk '{ print $1 }' | tr '\n' ' ')
[ "$want" = "$got" ] || die "file digests differ: coreutils [$want] qvet [$got]"
ba="" bq="" ma=""
for i in $(seq 1 "$N"); do
  read -r tc _ < <(timed bash -c coreutils4)
  read -r tq mq < <(timed "$qvet" digest -q --algo md5,sha1,sha256,sha512 "$raw")
  log "(a) run $i/$N: coreutils ${tc}s qvet ${tq}s"
  ba=$(min "$tc" "$ba"); bq=$(min "$tq" "$bq"); ma=$(max "$mq" "$ma")
done
row_a="$ba $bq $ma"

# --- (b), (c) content digest ------------------------------------------------------
log "(b/c) content of $(du -h --apparent-size "$zlib" | cut -f1) zlib qcow2: warming up"
prep_qemu
timed bash -c qemu_sha >/dev/null
want=$(awk '{ print $1 }' "$W/out/last.out")
rm -f "$ref"
timed "$qvet" digest -q --algo none --content --output json "$zlib" >/dev/null
got=$(grep -o '"sha256": "[0-9a-f]*"' "$W/out/last.out" | cut -d'"' -f4)
[ "$want" = "$got" ] || die "content sha256 differs: qemu-img+sha256sum $want qvet $got"
root_full=$(grep -o 'qvet-content-v1:[0-9a-f]*' "$W/out/last.out")
timed "$qvet" digest -q --algo none --content=root --output json "$zlib" >/dev/null
root_only=$(grep -o 'qvet-content-v1:[0-9a-f]*' "$W/out/last.out")
[ "$root_full" = "$root_only" ] || die "roots differ: $root_full vs $root_only"
bb="" bf="" br="" mf="" mr=""
for i in $(seq 1 "$N"); do
  prep_qemu
  read -r tb _ < <(timed bash -c qemu_sha)
  rm -f "$ref"
  read -r tf m1 < <(timed "$qvet" digest -q --algo none --content "$zlib")
  read -r tro m2 < <(timed "$qvet" digest -q --algo none --content=root "$zlib")
  log "(b/c) run $i/$N: qemu-img+sha256sum ${tb}s qvet --content ${tf}s --content=root ${tro}s"
  bb=$(min "$tb" "$bb"); bf=$(min "$tf" "$bf"); br=$(min "$tro" "$br")
  mf=$(max "$m1" "$mf"); mr=$(max "$m2" "$mr")
done
rm -f "$ref" "$W/out/last.out"

ratio() { awk -v v="$1" -v q="$2" 'BEGIN { if (q > 0) printf "%.2f", v / q; else print "n/a" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
echo
echo "qvet digest vs coreutils / qemu-img: ${DISK_MIB} MiB ext4 disk, ~${DATA_MIB} MiB of files, best of $N (wall seconds), $(nproc) CPUs"
printf '%-44s %-34s %9s %7s %7s %7s %9s\n' "qvet" "reference" "ref s" "qvet s" "ratio" "target" "qvet RSS"
# shellcheck disable=SC2086
set -- $row_a
printf '%-44s %-34s %9s %7s %7s %7s %6s MiB\n' "digest --algo md5,sha1,sha256,sha512 (raw)" \
  "md5sum;sha1sum;sha256sum;sha512sum" "$1" "$2" "$(ratio "$2" "$1")" "0.30" "$(mib "$3")"
printf '%-44s %-34s %9s %7s %7s %7s %6s MiB\n' "digest --content (zlib qcow2)" \
  "qemu-img convert -O raw + sha256sum" "$bb" "$bf" "$(ratio "$bf" "$bb")" "0.25" "$(mib "$mf")"
printf '%-44s %-34s %9s %7s %7s %7s %6s MiB\n' "digest --content=root (zlib qcow2)" \
  "qemu-img convert -O raw + sha256sum" "$bb" "$br" "$(ratio "$br" "$bb")" "0.10" "$(mib "$mr")"
echo "answers checked: file digests = coreutils'; content sha256 = sha256sum of qemu-img's raw output; root-only root = full root"
