#!/usr/bin/env bash
# Benchmark (not a test): `qvet check` against `qemu-img check` on an image
# with many clusters (4 KiB clusters, >= 1 GiB of data written out of order so
# that the L2 tables and data are interleaved as a running VM leaves them).
# Prints wall-clock seconds (best of N) and the ratio qvet / qemu-img.
# Env: BENCH_DIR (default /tmp/qvet-bench), N (default 3), DATA_GIB (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/tmp/qvet-bench}
n=${N:-3}
gib=${DATA_GIB:-1}
mkdir -p "$dir"
img="$dir/check-4k-${gib}g.qcow2"
if [ ! -f "$img" ]; then
  echo "building $img (4 KiB clusters, ${gib} GiB of data)..." >&2
  qemu-img create -q -f qcow2 -o cluster_size=4k "$img.tmp" "$((gib * 2))G"
  cmds=()
  # 64 MiB pieces written back to front, at every other 64 MiB slot.
  for ((i = gib * 16 - 1; i >= 0; i--)); do
    cmds+=(-c "write -q -P $((i % 250 + 1)) $((i * 128))M 64M")
  done
  qemu-io -f qcow2 "${cmds[@]}" "$img.tmp" >/dev/null
  mv "$img.tmp" "$img"
fi
cargo build --release -q -p qvet
qvet=target/release/qvet

best() { # best wall time of n runs of "$@", output discarded; exit codes 0-3 accepted
  local b="" t s e
  for ((k = 0; k < n; k++)); do
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || [ $? -le 3 ]
    e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc -l)
    if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
  done
  printf '%.3f' "$b"
}

"$qvet" check --output json "$img" >/dev/null || true   # warm the page cache
q=$(best qemu-img check --output=json "$img")
v=$(best "$qvet" check --output json "$img")
cmp <("$qvet" check --output json "$img" | python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop("qvet"); print(json.dumps(d, sort_keys=True))') \
    <(qemu-img check --output=json "$img" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))') \
  && same=yes || same=NO
printf '%-34s %10s %10s %8s %s\n' image qemu-img_s qvet_s ratio same-json
printf '%-34s %10s %10s %8.2f %s\n' "$(basename "$img")" "$q" "$v" "$(echo "$v / $q" | bc -l)" "$same"
