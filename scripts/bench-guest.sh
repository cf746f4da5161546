#!/usr/bin/env bash
# Benchmark (not a test) of the guest-file commands, side by side with other
# tools (issue 5, item 8):
#
# (a) `qvet ls -R --sha256 --output json IMG:/` (lists the tree and reads and
#     hashes every regular file) on the >= 1.5 GB whole-disk ext4 image that
#     scripts/bench-convert.sh builds (raw, and as uncompressed qcow2), against
#       - `debugfs -R 'rdump / OUT' IMG` (extracts every file; raw only; it
#         also pays for writing ~1.1 GiB to the host filesystem), and
#       - dissect (dissect.target + dissect.extfs, in a venv): a Python walk
#         that opens the raw disk and reads + sha256s every regular file
#         (skipped when BENCH_DISSECT_PY does not exist; see below).
# (b) `qvet diff A B` of two 4 GiB-virtual qcow2 disks (one ext4 partition
#     with a few hundred MiB of files from /usr) differing in one file,
#     against `qemu-img compare A B`, as plain and as zlib-compressed qcow2.
#     Target: qvet <= 0.3x. See the section for the three pairs timed.
#
# Each command runs once to warm the page cache, then best of N wall seconds;
# peak RSS is /usr/bin/time's %M of the best run's process.
#
# Environment:
#   BENCH_DIR          work dir, images cached here               (/tmp/qvet-bench)
#   BENCH_RUNS         timed runs per command (best of)           (3)
#   BENCH_DISSECT_RUNS timed runs of the (slow) dissect walk      (1)
#   BENCH_DISSECT_PY   python with dissect.target + dissect.extfs (/tmp/dissect-venv/bin/python)
#                      (python3 -m venv /tmp/dissect-venv &&
#                       /tmp/dissect-venv/bin/pip install dissect.target dissect.extfs)
#   BENCH_DISSECT_TIMEOUT  seconds before the dissect walk is given up (900)
#   BENCH_DIFF_MIB     file data in the (b) filesystem             (400)
#   BENCH_PARTS        which parts to run                          ("a b")
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

W=${BENCH_DIR:-/tmp/qvet-bench}
N=${BENCH_RUNS:-3}
ND=${BENCH_DISSECT_RUNS:-1}
PY=${BENCH_DISSECT_PY:-/tmp/dissect-venv/bin/python}
DIFF_MIB=${BENCH_DIFF_MIB:-400}
DT=${BENCH_DISSECT_TIMEOUT:-900}
PARTS=" ${BENCH_PARTS:-a b} "
nfiles=0

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

PATH=$PATH:/usr/sbin:/sbin
for tool in qemu-img mke2fs debugfs sfdisk; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-utils e2fsprogs fdisk)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
[ "$N" -ge 1 ] 2>/dev/null || die "BENCH_RUNS must be a positive integer"

log "building qvet (release)"
cargo build --release -q -p qvet
qvet=$root/target/release/qvet

# The (a) image, named as scripts/bench-convert.sh names it.
raw=$W/img/disk-1536M-1130M.raw
qcow=$W/img/disk-1536M-1130M.plain.qcow2
if [[ $PARTS == *" a "* ]] && [ ! -s "$raw" ]; then
  log "building $raw with scripts/bench-convert.sh"
  BENCH_IMAGES=plain BENCH_RUNS=1 bash scripts/bench-convert.sh >/dev/null
fi
if [[ $PARTS == *" a "* ]] && [ ! -s "$qcow" ]; then
  qemu-img convert -O qcow2 "$raw" "$qcow.tmp"
  mv "$qcow.tmp" "$qcow"
fi
mkdir -p "$W/out"

# time_one CMD...: runs CMD once, prints "wall_seconds peak_rss_kib".
time_one() {
  local t
  t=$(mktemp "$W/time.XXXXXX")
  /usr/bin/time -f '%e %M' -o "$t" "$@" >/dev/null 2>"$W/out/last.stderr" || true
  tail -n 1 "$t"
  rm -f "$t"
}
# best RUNS WARM PREP CMD...: best-of-RUNS "seconds rss" (rss of the best run);
# PREP (a shell snippet) runs untimed before each run; WARM=1 runs once first.
best() {
  local runs=$1 warm=$2 prep=$3 b="" r s
  shift 3
  if [ "$warm" = 1 ]; then
    eval "$prep"
    time_one "$@" >/dev/null
  fi
  for _ in $(seq 1 "$runs"); do
    eval "$prep"
    r=$(time_one "$@")
    s=${r%% *}
    log "  $(basename "$1") ${s}s"
    if [ -z "$b" ] || awk -v a="$s" -v c="${b%% *}" 'BEGIN { exit !(a + 0 < c + 0) }'; then b=$r; fi
  done
  echo "$b"
}

rows=()
# row GROUP TOOL "secs rss" QVET_SECS TARGET
row() {
  local secs=${3%% *} rss=${3##* } ratio
  # A time of ">T" (timed out after T seconds) gives an upper bound "<ratio".
  ratio=$(awk -v q="$4" -v s="$secs" 'BEGIN {
    lt = sub(/^>/, "", s); if (s + 0 > 0) printf "%s%.3f", (lt ? "<" : ""), q / s; else print "n/a" }')
  rows+=("$1|$2|$secs|$((rss / 1024))|$ratio|$5")
}

# --- (a) ls -R --sha256 + read every file ------------------------------------
if [[ $PARTS == *" a "* ]]; then
log "(a) qvet ls -R --sha256 on the raw image"
q_raw=$(best "$N" 1 : "$qvet" ls -R --sha256 --output json "$raw:/")
if grep -q . "$W/out/last.stderr"; then log "qvet stderr: $(head -c 300 "$W/out/last.stderr")"; fi
"$qvet" ls -R --sha256 --output json "$raw:/" >"$W/out/ls.json"
nfiles=$(grep -c '"sha256": "' "$W/out/ls.json" || true)
rm -f "$W/out/ls.json"
log "(a) qvet ls -R --sha256 on the qcow2 image"
q_q=$(best "$N" 1 : "$qvet" ls -R --sha256 --output json "$qcow:/")
row "(a) ls+sha256 raw" "qvet" "$q_raw" "${q_raw%% *}" ""
row "(a) ls+sha256 qcow2" "qvet" "$q_q" "${q_q%% *}" ""

rd=$W/out/rdump
log "(a) debugfs rdump on the raw image"
d=$(best "$N" 1 "rm -rf '$rd'; mkdir -p '$rd'; sync" debugfs -R "rdump / $rd" "$raw")
rm -rf "$rd"
row "(a) ls+sha256 raw" "debugfs rdump" "$d" "${q_raw%% *}" "report"
fi

# --- (b) diff of two 4 GiB-virtual qcow2 disks ---------------------------------
# Three versions of one disk (one ext4 partition holding DIFF_MIB of /usr):
#   a  the reference;
#   c  one file's first block overwritten in place (same size, no metadata
#      change: what a byte-patching repack does). The file is the last one
#      mke2fs placed, so the first differing byte lies near the end of the
#      data and `qemu-img compare` scans (and inflates) nearly everything;
#   b  one file rewritten with debugfs (new size, new blocks, superblock and
#      bitmaps updated): qemu-img compare stops at the superblock, 1 MiB +
#      1 KiB in, so it is shown for reference without a target;
# plus a byte-identical copy of a (b2), where qemu-img compare reads all.
# Each is wrapped as uncompressed qcow2 and as zlib-compressed qcow2 (how
# appliance images ship).
if [[ $PARTS != *" b "* ]]; then
  log "(b) skipped (BENCH_PARTS)"
elif "$qvet" diff --help >/dev/null 2>&1; then
  D=$W/img/diff-4G-${DIFF_MIB}M
  if [ ! -s "$D.c.zlib.qcow2" ]; then
    log "(b) building three 4 GiB disks (${DIFF_MIB} MiB of files, one partition)"
    tree=$W/diff-tree
    rm -rf "$tree"
    mkdir -p "$tree"
    for d in /usr/share /usr/lib /usr/bin; do
      { find "$d" -xdev -type f -readable -printf '%s\t%p\n' 2>/dev/null || true; } | LC_ALL=C sort -t$'\t' -k2,2
    done | awk -F'\t' -v budget=$((DIFF_MIB * 1048576)) '{ if (sum + $1 > budget) next; sum += $1; print $2 }' >"$W/diff-files.txt"
    tar -cf - --no-recursion -P -T "$W/diff-files.txt" 2>/dev/null | tar -xf - -C "$tree" 2>/dev/null || true
    fs=$W/img/diff-part.ext4
    rm -f "$fs" "$fs.b" "$fs.c"
    mke2fs -q -F -t ext4 -L qvet-diff -d "$tree" "$fs" 4095M >&2
    rm -rf "$tree"
    # b: one file rewritten with debugfs.
    victim=$(head -n 1 "$W/diff-files.txt")
    log "(b) b rewrites $victim with debugfs"
    cp --sparse=always "$fs" "$fs.b"
    printf 'changed by bench-guest.sh\n' >"$W/diff-new-content"
    printf 'rm %s\nwrite %s %s\n' "$victim" "$W/diff-new-content" "$victim" >"$W/diff-cmds"
    debugfs -w -f "$W/diff-cmds" "$fs.b" >/dev/null 2>&1
    # c: the first block of the file placed last (highest first block among
    # the 200 largest files), patched in place.
    best_blk=0 late=""
    while IFS= read -r f; do
      case $f in *' '* | *'"'*) continue ;; esac
      blk=$(debugfs -R "bmap $f 0" "$fs" 2>/dev/null | tail -n 1)
      if [ "${blk:-0}" -gt "$best_blk" ] 2>/dev/null; then best_blk=$blk late=$f; fi
    done < <(while IFS= read -r f; do printf '%s\t%s\n' "$(stat -c %s "$f" 2>/dev/null || echo 0)" "$f"; done <"$W/diff-files.txt" |
      sort -t$'\t' -k1,1nr | head -n 200 | cut -f2-)
    [ -n "$late" ] || die "(b) no file block found for the in-place change"
    bs=$(dumpe2fs -h "$fs" 2>/dev/null | awk -F: '/^Block size/ { gsub(/ /, "", $2); print $2 }')
    log "(b) c patches $late in place (block $best_blk of $bs bytes)"
    cp --sparse=always "$fs" "$fs.c"
    printf 'patched in place by bench-guest.sh' | dd of="$fs.c" bs=1 seek=$((best_blk * bs)) conv=notrunc status=none
    for side in a b c; do
      r=$W/img/diff-disk.$side.raw
      rm -f "$r"
      truncate -s 4G "$r"
      # A fixed disk identifier: the disks differ only inside the filesystem.
      printf 'label: dos\nlabel-id: 0x51e7d15c\nstart=2048, type=83\n' | sfdisk -q "$r"
      src=$fs
      [ "$side" = a ] || src=$fs.$side
      dd if="$src" of="$r" bs=1M seek=1 conv=notrunc,sparse status=none
      qemu-img convert -O qcow2 "$r" "$D.$side.plain.qcow2.tmp"
      mv "$D.$side.plain.qcow2.tmp" "$D.$side.plain.qcow2"
      qemu-img convert -c -O qcow2 "$r" "$D.$side.zlib.qcow2.tmp"
      mv "$D.$side.zlib.qcow2.tmp" "$D.$side.zlib.qcow2"
      rm -f "$r"
    done
    rm -f "$fs" "$fs.b" "$fs.c"
  fi
  for kind in plain zlib; do
    A=$D.a.$kind.qcow2
    [ -s "$D.a-copy.$kind.qcow2" ] || cp --sparse=always "$A" "$D.a-copy.$kind.qcow2"
    "$qvet" diff "$A" "$D.c.$kind.qcow2" >"$W/out/diff.txt" 2>&1 || true
    log "(b) qvet diff a c ($kind) says: $(head -c 300 "$W/out/diff.txt" | tr '\n' ' ')"
    "$qvet" diff "$A" "$D.b.$kind.qcow2" >"$W/out/diff.txt" 2>&1 || true
    log "(b') qvet diff a b ($kind) says: $(head -c 300 "$W/out/diff.txt" | tr '\n' ' ')"
    for pair in "b|c|in-place change" "b'|b|debugfs rewrite" "b2|a-copy|identical copy"; do
      IFS='|' read -r tag other what <<<"$pair"
      B=$D.$other.$kind.qcow2
      log "($tag) $kind: qvet diff / qemu-img compare ($what)"
      qd=$(best "$N" 1 : "$qvet" diff "$A" "$B")
      qc=$(best "$N" 1 : qemu-img compare "$A" "$B")
      target="<= 0.30"
      [ "$tag" = "b'" ] && target=report
      row "($tag) $kind $what" "qvet diff" "$qd" "${qd%% *}" ""
      row "($tag) $kind $what" "qemu-img compare" "$qc" "${qd%% *}" "$target"
    done
  done
else
  log "(b) skipped: this qvet has no 'diff' command yet"
  rows+=("(b) diff 4G qcow2|qvet diff|skipped: no 'qvet diff'|-|-|<= 0.30")
fi

# --- (a, last because slow) dissect -------------------------------------------
if [[ $PARTS != *" a "* ]]; then
  :
elif [ -x "$PY" ] && "$PY" -c 'import dissect.target, dissect.extfs' 2>/dev/null; then
  walk_py=$W/out/dissect_walk.py
  cat >"$walk_py" <<'EOF'
# Walks an ext filesystem with dissect.target and sha256s every regular file.
import hashlib, sys
from dissect.target import filesystem
fs = filesystem.open(open(sys.argv[1], "rb"))
n = 0
for top, dirs, files in fs.walk("/"):
    for name in files:
        e = fs.get(top.rstrip("/") + "/" + name)
        if e.is_symlink() or not e.is_file():
            continue
        h = hashlib.sha256()
        with e.open() as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        n += 1
with open(sys.argv[2], "w") as out:
    print(n, file=out)
EOF
  log "(a) dissect walk + read + sha256 on the raw image"
  rm -f "$W/out/dissect.count"
  ds=$(best "$ND" 0 : timeout "$DT" "$PY" "$walk_py" "$raw" "$W/out/dissect.count")
  if [ -s "$W/out/dissect.count" ]; then
    log "  dissect hashed $(cat "$W/out/dissect.count") files, qvet $nfiles"
  else
    ds=">${DT} 0"
    log "  dissect did not finish within ${DT}s"
  fi
  row "(a) ls+sha256 raw" "dissect walk+read" "$ds" "${q_raw%% *}" "report"
else
  log "(a) dissect: skipped ($PY lacks dissect.target / dissect.extfs)"
fi


echo
echo "qvet guest benchmarks: best of $N (dissect: best of $ND), wall seconds; $(nproc) cores; qvet hashed $nfiles files in (a)"
printf '%-32s %-18s %9s %13s %9s %8s\n' benchmark tool "best s" "peak RSS MiB" "qvet/tool" target
printf '%s\n' "${rows[@]}" | sort -s -t'|' -k1,1 | while IFS='|' read -r g t s m ra ta; do
  printf '%-32s %-18s %9s %13s %9s %8s\n' "$g" "$t" "$s" "$m" "$ra" "$ta"
done
