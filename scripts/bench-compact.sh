#!/usr/bin/env bash
# Benchmark (not a test): `qvet compact` against `qemu-img convert -O qcow2`
# (and `-c`), and against the free-space-aware reference: `e2fsck -E discard`
# and `zerofree` on copies of the raw disk, then `qemu-img convert`.
#
# The disk: an MBR disk with one ext4 partition filled with real files from
# this machine, a third of which are then deleted with debugfs (a guest that
# deleted files without discarding), stored as the plain qcow2 qemu-img makes.
#
# Environment:
#   BENCH_DIR        work dir; built images are cached here  (/tmp/qvet-bench-compact)
#   BENCH_RUNS       timed runs per tool (best of)            (2)
#   BENCH_DATA_MIB   file data copied into the filesystem     (900)
#   BENCH_DISK_MIB   size of the raw disk                     (1536)
#   BENCH_SOURCES    trees whose files fill the filesystem
#                    ("/usr/share /usr/include /usr/lib /usr/bin /usr/libexec /usr/sbin")
#   CARGO_TARGET_DIR where cargo builds qvet                  (./target)
#
# Nothing is dropped from the page cache (no root needed); delete BENCH_DIR
# to rebuild the images.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

W=${BENCH_DIR:-/tmp/qvet-bench-compact}
N=${BENCH_RUNS:-2}
DATA_MIB=${BENCH_DATA_MIB:-900}
DISK_MIB=${BENCH_DISK_MIB:-1536}
SOURCES=${BENCH_SOURCES:-"/usr/share /usr/include /usr/lib /usr/bin /usr/libexec /usr/sbin"}
target=${CARGO_TARGET_DIR:-$root/target}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

PATH=$PATH:/usr/sbin:/sbin
for tool in qemu-img mke2fs debugfs e2fsck sfdisk; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-utils e2fsprogs fdisk)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
have_zerofree=no
command -v zerofree >/dev/null && have_zerofree=yes

log "building qvet (release)"
cargo build --release -q -p qvet
qvet=$target/release/qvet

mkdir -p "$W/img" "$W/out"
raw=$W/img/disk-${DISK_MIB}M-${DATA_MIB}M.raw
part_start=2048 # sectors
part_mib=$((DISK_MIB - 2))

# --- (a) the raw disk: ext4 with real files, a third of them deleted --------
if [ ! -s "$raw" ]; then
  tree=$W/tree
  rm -rf "$tree" "$raw.tmp" "$W/fs.tmp"
  mkdir -p "$tree"
  srcs=()
  for d in $SOURCES; do [ -d "$d" ] && srcs+=("$d"); done
  [ ${#srcs[@]} -gt 0 ] || die "none of BENCH_SOURCES exists: $SOURCES"
  for d in "${srcs[@]}"; do
    { find "$d" -xdev -type f -readable -printf '%s\t%p\n' 2>/dev/null || true; } \
      | LC_ALL=C sort -t$'\t' -k2,2
  done \
    | awk -F'\t' -v budget=$((DATA_MIB * 1024 * 1024)) '
        { if (sum + $1 > budget) next; sum += $1; print $2 }' > "$W/files.txt"
  log "copying $(wc -l < "$W/files.txt") files"
  tar -cf - --no-recursion -P -T "$W/files.txt" 2>/dev/null \
    | tar -xf - -C "$tree" 2>/dev/null || true
  log "mke2fs -t ext4 -d (${part_mib} MiB partition)"
  mke2fs -q -F -t ext4 -L qvet-bench -d "$tree" "$W/fs.tmp" "${part_mib}M"
  # Delete every third top-level-sorted file (by debugfs, as a guest would,
  # without discard: the data stays in the image).
  (cd "$tree" && find . -type f -printf '%P\n' | LC_ALL=C sort | awk 'NR % 3 == 0') \
    | sed 's|^|rm /|' > "$W/rm.cmds"
  log "deleting $(wc -l < "$W/rm.cmds") files with debugfs"
  debugfs -w -f "$W/rm.cmds" "$W/fs.tmp" >/dev/null 2>&1
  truncate -s "${DISK_MIB}M" "$raw.tmp"
  printf 'label: dos\nstart=%d, type=83\n' "$part_start" | sfdisk -q "$raw.tmp"
  dd if="$W/fs.tmp" of="$raw.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
  mv "$raw.tmp" "$raw"
  rm -rf "$tree" "$W/fs.tmp"
fi
img=$W/img/input.qcow2
[ -s "$img" ] || qemu-img convert -O qcow2 "$raw" "$img"

# --- (b) the free-space-aware references (sizes only) ------------------------
ref_size() { # method -> plain and -c sizes of qemu-img convert after it
  local m=$1 r=$W/out/ref-$1.raw fs=$W/out/ref-$1.fs
  [ -s "$W/out/ref-$m.sizes" ] && { cat "$W/out/ref-$m.sizes"; return; }
  dd if="$raw" of="$fs" bs=1M skip=1 count="$part_mib" conv=sparse status=none
  case $m in
    # A first pass repairs what debugfs left (free counts): e2fsck turns
    # discard off when it fixes anything.
    discard) e2fsck -fy "$fs" >/dev/null 2>&1 || true
      e2fsck -fy -E discard "$fs" >/dev/null 2>&1 || true ;;
    zerofree) zerofree "$fs" ;;
  esac
  cp --sparse=always "$raw" "$r"
  dd if="$fs" of="$r" bs=1M seek=1 conv=notrunc status=none
  qemu-img convert -O qcow2 "$r" "$r.qcow2"
  qemu-img convert -c -O qcow2 "$r" "$r.c.qcow2"
  echo "$(stat -c %s "$r.qcow2") $(stat -c %s "$r.c.qcow2")" | tee "$W/out/ref-$m.sizes"
  rm -f "$r" "$fs" "$r.qcow2" "$r.c.qcow2"
}
log "reference: e2fsck -E discard, then qemu-img convert"
read -r disc_plain disc_c < <(ref_size discard)
zf_plain=n/a zf_c=n/a
if [ $have_zerofree = yes ]; then
  log "reference: zerofree, then qemu-img convert"
  read -r zf_plain zf_c < <(ref_size zerofree)
fi

# --- (c) timing -----------------------------------------------------------------
# Each variant runs once untimed (page cache and writeback settle), then
# BENCH_RUNS times; the best wall-clock time counts.
run_one() { # label -> "seconds size"
  local what=$1 out=$W/out/o.qcow2 t
  rm -f "$out"
  sync
  t=$(mktemp "$W/time.XXXXXX")
  : > "$W/rss"
  case $what in
    qemu) /usr/bin/time -f %e -o "$t" qemu-img convert -O qcow2 "$img" "$out" ;;
    qemu-sync) /usr/bin/time -f %e -o "$t" qemu-img convert -t writeback -O qcow2 "$img" "$out" ;;
    qemu-c) /usr/bin/time -f %e -o "$t" qemu-img convert -c -O qcow2 "$img" "$out" ;;
    qvet) /usr/bin/time -f '%e %M' -o "$t" "$qvet" compact -q -f qcow2 "$img" "$out" >/dev/null ;;
    qvet-c) /usr/bin/time -f %e -o "$t" "$qvet" compact -q -c -f qcow2 "$img" "$out" >/dev/null ;;
    qvet-zstd) /usr/bin/time -f %e -o "$t" "$qvet" compact -q -c --compression-type zstd -f qcow2 "$img" "$out" >/dev/null ;;
    qvet-keep) /usr/bin/time -f %e -o "$t" "$qvet" compact -q --keep-free-space -f qcow2 "$img" "$out" >/dev/null ;;
  esac
  if [ "${what#qvet}" != "$what" ]; then
    qemu-img check -q -f qcow2 "$out" || die "$what: qemu-img check reports problems"
  fi
  read -r secs rss < <(tail -n 1 "$t")
  if [ -n "${rss:-}" ]; then echo "$rss" > "$W/rss"; fi
  echo "$secs $(stat -c %s "$out")"
  rm -f "$t" "$out"
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }

declare -A T S
for what in qemu qemu-sync qemu-c qvet qvet-c qvet-zstd qvet-keep; do
  log "$what: warm-up run (not counted)"
  run_one "$what" >/dev/null
  best=""
  for i in $(seq 1 "$N"); do
    read -r secs size < <(run_one "$what")
    log "$what run $i/$N: ${secs}s, $size bytes"
    best=$(min "$secs" "$best")
  done
  T[$what]=$best
  S[$what]=$size
  if [ "$what" = qvet ]; then RSS=$(cat "$W/rss"); fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "n/a") printf "%.3f", a / b; else print "n/a" }'; }
mib() { awk -v a="$1" 'BEGIN { if (a == "n/a") print a; else printf "%.1f", a / 1048576 }'; }
echo
echo "qvet compact vs qemu-img convert: ${DISK_MIB} MiB disk, ext4 with ~${DATA_MIB} MiB of files, a third deleted; best of $N"
echo "input: $(mib "$(stat -c %s "$img")") MiB qcow2"
printf '%-34s %10s %9s\n' "" "size MiB" "seconds"
printf '%-34s %10s %9s\n' "qemu-img convert -O qcow2" "$(mib "${S[qemu]}")" "${T[qemu]}"
printf '%-34s %10s %9s\n' "qemu-img convert -t writeback" "$(mib "${S[qemu-sync]}")" "${T[qemu-sync]}"
printf '%-34s %10s %9s\n' "qemu-img convert -c -O qcow2" "$(mib "${S[qemu-c]}")" "${T[qemu-c]}"
printf '%-34s %10s %9s\n' "e2fsck -E discard + convert" "$(mib "$disc_plain")" "-"
printf '%-34s %10s %9s\n' "e2fsck -E discard + convert -c" "$(mib "$disc_c")" "-"
printf '%-34s %10s %9s\n' "zerofree + convert" "$(mib "$zf_plain")" "-"
printf '%-34s %10s %9s\n' "zerofree + convert -c" "$(mib "$zf_c")" "-"
printf '%-34s %10s %9s\n' "qvet compact" "$(mib "${S[qvet]}")" "${T[qvet]}"
printf '%-34s %10s %9s\n' "qvet compact -c (zlib)" "$(mib "${S[qvet-c]}")" "${T[qvet-c]}"
printf '%-34s %10s %9s\n' "qvet compact -c zstd" "$(mib "${S[qvet-zstd]}")" "${T[qvet-zstd]}"
printf '%-34s %10s %9s\n' "qvet compact --keep-free-space" "$(mib "${S[qvet-keep]}")" "${T[qvet-keep]}"
echo
# The reference is the smaller of the discard and zerofree results (e2fsck
# may not discard on an image file).
best() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "n/a" || a + 0 <= b + 0) print a; else print b }'; }
ref_plain=$(best "$disc_plain" "$zf_plain")
ref_c=$(best "$disc_c" "$zf_c")
echo "size  qvet / (reference + convert)         $(ratio "${S[qvet]}" "$ref_plain")   (target <= 1.02)"
echo "size  qvet -c / (reference + convert -c)   $(ratio "${S[qvet-c]}" "$ref_c")   (target <= 1.02)"
echo "size  qvet -c zstd / (reference + convert -c zlib) $(ratio "${S[qvet-zstd]}" "$ref_c")"
echo "size  qvet --keep-free-space / convert     $(ratio "${S[qvet-keep]}" "${S[qemu]}")   (target <= 1.00)"
echo "time  qvet / qemu-img convert              $(ratio "${T[qvet]}" "${T[qemu]}")   (target <= 1.0; qvet fsyncs and proves)"
echo "time  qvet / qemu-img -t writeback         $(ratio "${T[qvet]}" "${T[qemu-sync]}")   (both durable when they exit)"
echo "time  qvet -c / qemu-img convert -c        $(ratio "${T[qvet-c]}" "${T[qemu-c]}")   (target <= 0.4)"
echo "peak RSS of qvet compact: $((RSS / 1024)) MiB   (target <= 128 MiB)"
