#!/usr/bin/env bash
# Benchmark (not a test): `qvet convert -O raw` against `qemu-img convert -O raw`
# on an encrypted (LUKS, qemu's default aes-256-xts-plain64) qcow2 holding a
# 1 GiB ext4 guest full of real files.
#
# Each tool converts once to warm the page cache, then both run N times
# alternating; the best wall-clock time of each counts, the outputs must be
# byte-identical, and the ratio qvet/qemu-img is printed (goal <= 0.50).
#
# Environment:
#   BENCH_DIR        work dir; built images are cached here   (/tmp/qvet-bench-enc)
#   BENCH_RUNS       timed runs per tool (best of)            (3)
#   BENCH_DATA_MIB   file data copied into the filesystem     (800)
#   BENCH_DISK_MIB   size of the guest disk (>= 1024)         (1024)
#   BENCH_CIPHER     encrypt.cipher-alg / -mode / ivgen-alg   ("aes-256 xts plain64")
#   BENCH_SOURCES    trees whose files fill the filesystem    ("/usr/lib /usr/share /usr/bin")
#   BENCH_ITER_TIME  encrypt.iter-time (ms) of the key slot   (qemu's default, 2000)
#
# Both tools first spend about two seconds of PBKDF2 opening the key slot
# (qemu-img calibrates the iteration count to that); BENCH_ITER_TIME=10 leaves
# mostly the data path: read, decrypt, write, sync.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

W=${BENCH_DIR:-/tmp/qvet-bench-enc}
N=${BENCH_RUNS:-3}
DATA_MIB=${BENCH_DATA_MIB:-800}
DISK_MIB=${BENCH_DISK_MIB:-1024}
read -r ALG MODE IVGEN <<<"${BENCH_CIPHER:-aes-256 xts plain64}"
SOURCES=${BENCH_SOURCES:-"/usr/lib /usr/share /usr/bin"}
ITER_TIME=${BENCH_ITER_TIME:-2000}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in qemu-img mke2fs cmp; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-utils e2fsprogs diffutils)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
[ "$DISK_MIB" -ge 1024 ] || die "BENCH_DISK_MIB must be at least 1024"

log "building qvet (release)"
cargo build --release -q -p qvet
qvet=${CARGO_TARGET_DIR:-$root/target}/release/qvet

mkdir -p "$W/img" "$W/out"
key=$W/key
printf 'bench passphrase' > "$key"
raw=$W/img/disk-${DISK_MIB}M-${DATA_MIB}M.raw
if [ ! -s "$raw" ]; then
  tree=$W/tree
  rm -rf "$tree" "$raw.tmp"
  mkdir -p "$tree"
  for d in $SOURCES; do
    [ -d "$d" ] && { find "$d" -xdev -type f -readable -printf '%s\t%p\n' 2>/dev/null || true; } \
      | LC_ALL=C sort -t$'\t' -k2,2
  done \
    | awk -F'\t' -v budget=$((DATA_MIB * 1024 * 1024)) '
        { if (sum + $1 > budget) next; sum += $1; print $2 }' > "$W/files.txt"
  log "copying $(wc -l < "$W/files.txt") files"
  tar -cf - --no-recursion -P -T "$W/files.txt" 2>/dev/null | tar -xf - -C "$tree" 2>/dev/null || true
  log "mke2fs -t ext4 -d (${DISK_MIB} MiB disk)"
  mke2fs -q -F -t ext4 -d "$tree" "$raw.tmp" "${DISK_MIB}M"
  mv "$raw.tmp" "$raw"
  rm -rf "$tree"
fi

img=$W/img/disk-${DISK_MIB}M-${DATA_MIB}M.$ALG-$MODE-$IVGEN-it$ITER_TIME.qcow2
if [ ! -s "$img" ]; then
  log "qemu-img convert to LUKS qcow2 ($ALG-$MODE-$IVGEN)"
  qemu-img convert -O qcow2 --object "secret,id=sec0,file=$key" \
    -o "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=$ALG,encrypt.cipher-mode=$MODE,encrypt.ivgen-alg=$IVGEN,encrypt.iter-time=$ITER_TIME" \
    "$raw" "$img.tmp"
  mv "$img.tmp" "$img"
fi

q_out=$W/out/qemu.raw
v_out=$W/out/qvet.raw
run_qemu() {
  rm -f "$q_out"
  /usr/bin/time -f %e -o "$W/t" qemu-img convert --object "secret,id=sec0,file=$key" \
    --image-opts "driver=qcow2,file.filename=$img,encrypt.key-secret=sec0" -O raw "$q_out"
  cat "$W/t"
}
run_qvet() {
  rm -f "$v_out"
  /usr/bin/time -f %e -o "$W/t" "$qvet" convert -q --key-file "$key" "$img" "$v_out"
  cat "$W/t"
}
log "warming the page cache"
run_qemu >/dev/null
run_qvet >/dev/null
best_q=
best_v=
for _ in $(seq "$N"); do
  tq=$(run_qemu); tv=$(run_qvet)
  best_q=$(printf '%s\n%s\n' "$tq" "${best_q:-$tq}" | sort -g | head -1)
  best_v=$(printf '%s\n%s\n' "$tv" "${best_v:-$tv}" | sort -g | head -1)
done
same=identical
cmp -s "$q_out" "$v_out" || same=DIFFERENT
ratio=$(awk -v a="$best_v" -v b="$best_q" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
printf '%-28s %10s %10s %10s %8s %s\n' image size qemu-img_s qvet_s ratio output
printf '%-28s %9sM %10s %10s %8s %s\n' "luks $ALG-$MODE-$IVGEN it=$ITER_TIME" \
  "$(($(stat -c %s "$img") / 1048576))" "$best_q" "$best_v" "$ratio" "$same"
rm -f "$q_out" "$v_out"
[ "$same" = identical ]
