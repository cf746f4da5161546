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
#     with a few hundred MiB of files from /usr; B has one file rewritten with
#     debugfs) against `qemu-img compare A B`. Target: qvet <= 0.3x.
#     Skipped with a message while `qvet diff` does not exist.
#     qemu-img compare stops at the first differing sector (here the ext4
#     superblock, 1 MiB + 1 KiB in), so (b2) also times both tools on A
#     against a byte-identical copy of A, where qemu-img reads everything.
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
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

W=${BENCH_DIR:-/tmp/qvet-bench}
N=${BENCH_RUNS:-3}
ND=${BENCH_DISSECT_RUNS:-1}
PY=${BENCH_DISSECT_PY:-/tmp/dissect-venv/bin/python}
DIFF_MIB=${BENCH_DIFF_MIB:-400}
DT=${BENCH_DISSECT_TIMEOUT:-900}

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
if [ ! -s "$raw" ]; then
  log "building $raw with scripts/bench-convert.sh"
  BENCH_IMAGES=plain BENCH_RUNS=1 bash scripts/bench-convert.sh >/dev/null
fi
if [ ! -s "$qcow" ]; then
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

# --- (b) diff of two 4 GiB-virtual qcow2 disks ---------------------------------
if "$qvet" diff --help >/dev/null 2>&1; then
  A=$W/img/diff-4G-${DIFF_MIB}M.a.qcow2
  B=$W/img/diff-4G-${DIFF_MIB}M.b.qcow2
  A2=$W/img/diff-4G-${DIFF_MIB}M.a-copy.qcow2
  if [ ! -s "$A" ] || [ ! -s "$B" ]; then
    log "(b) building two 4 GiB disks (${DIFF_MIB} MiB of files, one partition)"
    tree=$W/diff-tree
    rm -rf "$tree"
    mkdir -p "$tree"
    for d in /usr/share /usr/lib /usr/bin; do
      { find "$d" -xdev -type f -readable -printf '%s\t%p\n' 2>/dev/null || true; } | LC_ALL=C sort -t$'\t' -k2,2
    done | awk -F'\t' -v budget=$((DIFF_MIB * 1048576)) '{ if (sum + $1 > budget) next; sum += $1; print $2 }' >"$W/diff-files.txt"
    tar -cf - --no-recursion -P -T "$W/diff-files.txt" 2>/dev/null | tar -xf - -C "$tree" 2>/dev/null || true
    fs=$W/img/diff-part.ext4
    rm -f "$fs" "$fs.b"
    mke2fs -q -F -t ext4 -L qvet-diff -d "$tree" "$fs" 4095M >&2
    rm -rf "$tree"
    # B: one existing file rewritten with new content.
    victim=$(head -n 1 "$W/diff-files.txt")
    log "(b) B rewrites $victim"
    cp --sparse=always "$fs" "$fs.b"
    printf 'changed by bench-guest.sh\n' >"$W/diff-new-content"
    printf 'rm %s\nwrite %s %s\n' "$victim" "$W/diff-new-content" "$victim" >"$W/diff-cmds"
    debugfs -w -f "$W/diff-cmds" "$fs.b" >/dev/null 2>&1
    for side in a b; do
      r=$W/img/diff-disk.$side.raw
      rm -f "$r"
      truncate -s 4G "$r"
      # A fixed disk identifier: A and B differ only inside the filesystem.
      printf 'label: dos\nlabel-id: 0x51e7d15c\nstart=2048, type=83\n' | sfdisk -q "$r"
      src=$fs
      [ "$side" = b ] && src=$fs.b
      dd if="$src" of="$r" bs=1M seek=1 conv=notrunc,sparse status=none
      out=$W/img/diff-4G-${DIFF_MIB}M.$side.qcow2
      qemu-img convert -O qcow2 "$r" "$out.tmp"
      mv "$out.tmp" "$out"
      rm -f "$r"
    done
    rm -f "$fs" "$fs.b"
  fi
  [ -s "$A2" ] || cp --sparse=always "$A" "$A2"
  log "(b) qvet diff"
  "$qvet" diff "$A" "$B" >"$W/out/diff.txt" 2>&1 || true
  log "  qvet diff says: $(head -c 400 "$W/out/diff.txt" | tr '\n' ' ')"
  qd=$(best "$N" 1 : "$qvet" diff "$A" "$B")
  log "(b) qemu-img compare"
  qc=$(best "$N" 1 : qemu-img compare "$A" "$B")
  # qemu-img compare stops at the first differing byte; any ext4 change
  # rewrites the superblock (free counts, write time) 1 KiB into the
  # partition, so A vs B ends almost at once. A vs an identical copy is the
  # full scan it pays when the difference is late or absent.
  log "(b) qemu-img compare A A-copy (identical: full scan)"
  qf=$(best "$N" 1 : qemu-img compare "$A" "$A2")
  log "(b) qvet diff A A-copy"
  qdf=$(best "$N" 1 : "$qvet" diff "$A" "$A2")
  row "(b) diff 4G qcow2" "qvet diff" "$qd" "${qd%% *}" ""
  row "(b) diff 4G qcow2" "qemu-img compare" "$qc" "${qd%% *}" "<= 0.30"
  row "(b2) A vs copy of A" "qvet diff" "$qdf" "${qdf%% *}" ""
  row "(b2) A vs copy of A" "qemu-img compare" "$qf" "${qdf%% *}" "<= 0.30"
else
  log "(b) skipped: this qvet has no 'diff' command yet"
  rows+=("(b) diff 4G qcow2|qvet diff|skipped: no 'qvet diff'|-|-|<= 0.30")
fi

# --- (a, last because slow) dissect -------------------------------------------
if [ -x "$PY" ] && "$PY" -c 'import dissect.target, dissect.extfs' 2>/dev/null; then
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
printf '%-20s %-18s %9s %13s %9s %8s\n' benchmark tool "best s" "peak RSS MiB" "qvet/tool" target
printf '%s\n' "${rows[@]}" | sort -s -t'|' -k1,1 | while IFS='|' read -r g t s m ra ta; do
  printf '%-20s %-18s %9s %13s %9s %8s\n' "$g" "$t" "$s" "$m" "$ra" "$ta"
done
