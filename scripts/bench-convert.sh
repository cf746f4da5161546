#!/usr/bin/env bash
# Benchmark (not a test): `qvet convert -O raw` against `qemu-img convert -O raw`
# on a >= 1 GiB ext4 disk image full of real, compressible files, stored as
# uncompressed qcow2, zlib-compressed qcow2 and zstd-compressed qcow2.
#
# For each image both tools run once to warm the page cache equally, then N
# times alternating (qemu-img, qvet, qemu-img, qvet, ...); the best wall-clock
# time of each is reported, and the two outputs are checked byte-identical.
#
# Environment:
#   BENCH_DIR        work dir; built images are cached here   (/tmp/qvet-bench)
#   BENCH_RUNS       timed runs per tool and image (best of)  (3)
#   BENCH_DATA_MIB   file data copied into the filesystem     (1130)
#   BENCH_DISK_MIB   size of the raw disk (must be >= 1024)   (1536)
#   BENCH_IMAGES     images to time, space separated          ("plain zlib zstd")
#   BENCH_SOURCES    trees whose files fill the filesystem
#                    ("/usr/share /usr/include /usr/lib /usr/bin /usr/libexec /usr/sbin")
#
# Nothing is dropped from the page cache (no root needed); delete BENCH_DIR to
# rebuild the images from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

W=${BENCH_DIR:-/tmp/qvet-bench}
N=${BENCH_RUNS:-3}
DATA_MIB=${BENCH_DATA_MIB:-1130}
DISK_MIB=${BENCH_DISK_MIB:-1536}
IMAGES=${BENCH_IMAGES:-"plain zlib zstd"}
SOURCES=${BENCH_SOURCES:-"/usr/share /usr/include /usr/lib /usr/bin /usr/libexec /usr/sbin"}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in qemu-img mke2fs cmp; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-utils e2fsprogs diffutils)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
[ "$N" -ge 1 ] 2>/dev/null || die "BENCH_RUNS must be a positive integer"
[ "$DISK_MIB" -ge 1024 ] || die "BENCH_DISK_MIB must be at least 1024 (a >= 1 GiB disk)"
[ "$DATA_MIB" -lt "$DISK_MIB" ] || die "BENCH_DATA_MIB must be below BENCH_DISK_MIB"

log "building qvet (release)"
cargo build --release -q -p qvet
qvet=$root/target/release/qvet

mkdir -p "$W/img" "$W/out"
raw=$W/img/disk-${DISK_MIB}M-${DATA_MIB}M.raw

# --- (a) the raw disk: an ext4 filesystem holding ~DATA_MIB of real files ----
if [ ! -s "$raw" ]; then
  tree=$W/tree
  rm -rf "$tree" "$raw.tmp"
  mkdir -p "$tree"
  srcs=()
  for d in $SOURCES; do [ -d "$d" ] && srcs+=("$d"); done
  [ ${#srcs[@]} -gt 0 ] || die "none of BENCH_SOURCES exists: $SOURCES"
  log "choosing ${DATA_MIB} MiB of files from: ${srcs[*]}"
  # Regular, readable files, tree by tree in the order given and sorted by
  # name within a tree, until the byte budget is spent.
  for d in "${srcs[@]}"; do
    { find "$d" -xdev -type f -readable -printf '%s\t%p\n' 2>/dev/null || true; } \
      | LC_ALL=C sort -t$'\t' -k2,2
  done \
    | awk -F'\t' -v budget=$((DATA_MIB * 1024 * 1024)) '
        { if (sum + $1 > budget) next; sum += $1; print $2 }
        END { printf "%d\n", sum > "/dev/stderr" }' \
    > "$W/files.txt" 2> "$W/files.bytes"
  log "copying $(wc -l < "$W/files.txt") files ($(($(cat "$W/files.bytes") / 1048576)) MiB)"
  tar -cf - --no-recursion -P -T "$W/files.txt" 2>/dev/null \
    | tar -xf - -C "$tree" 2>/dev/null || true
  log "mke2fs -t ext4 -d (${DISK_MIB} MiB disk)"
  mke2fs -q -F -t ext4 -L qvet-bench -d "$tree" "$raw.tmp" "${DISK_MIB}M"
  mv "$raw.tmp" "$raw"
  rm -rf "$tree"
fi

# --- (b) the qcow2 images -----------------------------------------------------
img_path() { echo "$W/img/disk-${DISK_MIB}M-${DATA_MIB}M.$1.qcow2"; }
for kind in $IMAGES; do
  img=$(img_path "$kind")
  [ -s "$img" ] && continue
  log "qemu-img convert -> $kind qcow2"
  case $kind in
    plain) qemu-img convert -O qcow2 "$raw" "$img.tmp" ;;
    zlib | zstd) qemu-img convert -c -O qcow2 -o compression_type="$kind" "$raw" "$img.tmp" ;;
    *) die "unknown image kind '$kind' (plain, zlib, zstd)" ;;
  esac
  mv "$img.tmp" "$img"
done

# --- (c) timing -----------------------------------------------------------------
# Prints the wall-clock seconds of one conversion to OUT (removed first).
# The output is removed and dirty pages are flushed (untimed) before each run,
# so that no run pays for the previous one's writeback.
# qemu: plain `qemu-img convert`, which never syncs (its output may still be in
# the page cache when it exits); qemu-sync: `-t writeback`, which fdatasyncs
# like qvet, whose output is durable (temp file, fsync, rename) when it exits.
run_one() { # tool img out
  local tool=$1 img=$2 out=$3 t
  rm -f "$out"
  sync
  t=$(mktemp "$W/time.XXXXXX")
  case $tool in
    qemu) /usr/bin/time -f %e -o "$t" qemu-img convert -O raw "$img" "$out" ;;
    qemu-sync) /usr/bin/time -f %e -o "$t" qemu-img convert -t writeback -O raw "$img" "$out" ;;
    qvet) /usr/bin/time -f %e -o "$t" "$qvet" convert -q -O raw "$img" "$out" ;;
  esac
  tail -n 1 "$t"
  rm -f "$t"
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }

rows=()
status=0
for kind in $IMAGES; do
  img=$(img_path "$kind")
  oq=$W/out/qemu.raw
  ov=$W/out/qvet.raw
  log "$kind: $(du -h --apparent-size "$img" | cut -f1) file, warming up"
  run_one qemu "$img" "$oq" >/dev/null
  run_one qvet "$img" "$ov" >/dev/null
  bq="" bs="" bv=""
  for i in $(seq 1 "$N"); do
    tq=$(run_one qemu "$img" "$oq")
    ts=$(run_one qemu-sync "$img" "$oq")
    tv=$(run_one qvet "$img" "$ov")
    log "$kind run $i/$N: qemu-img ${tq}s qemu-img -t writeback ${ts}s qvet ${tv}s"
    bq=$(min "$tq" "$bq")
    bs=$(min "$ts" "$bs")
    bv=$(min "$tv" "$bv")
  done
  if cmp -s "$oq" "$ov"; then same=yes; else same=NO; status=1; fi
  rows+=("$kind $(du -m --apparent-size "$img" | cut -f1) $bq $bs $bv $same")
  rm -f "$oq" "$ov"
done

echo
echo "qvet convert -O raw vs qemu-img convert -O raw: ${DISK_MIB} MiB ext4 disk, ~${DATA_MIB} MiB of files, best of $N (wall seconds)"
printf '%-8s %9s %11s %14s %8s %10s %15s %10s\n' image "file MiB" "qemu-img s" "qemu-img -t wb" "qvet s" "qvet/qemu" "qvet/qemu-sync" identical
for r in "${rows[@]}"; do
  # shellcheck disable=SC2086
  set -- $r
  ratio=$(awk -v v="$5" -v q="$3" 'BEGIN { if (q > 0) printf "%.2f", v / q; else print "n/a" }')
  ratio_s=$(awk -v v="$5" -v q="$4" 'BEGIN { if (q > 0) printf "%.2f", v / q; else print "n/a" }')
  printf '%-8s %9s %11s %14s %8s %10s %15s %10s\n' "$1" "$2" "$3" "$4" "$5" "$ratio" "$ratio_s" "$6"
done
echo "target: qvet/qemu <= 0.50"
exit $status
