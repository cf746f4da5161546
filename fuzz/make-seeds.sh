#!/usr/bin/env bash
# Regenerates the seed corpus in fuzz/corpus/{image,header}/ from tiny images
# made by qemu-img and qemu-io, plus hand-mutated headers.
#
# Every seed is kept under 64 KiB: images use small clusters and their
# trailing zero bytes are cut off (a read past the end of an image file reads
# zeros, in qemu as in qvet); a cut is kept only when `qemu-img compare` still
# finds the guest view identical, otherwise the first 64 KiB are kept as a
# "broken" seed. The header seeds are the first 4 KiB of each qcow2 seed.
set -euo pipefail
cd "$(dirname "$0")"
for t in qemu-img qemu-io python3; do
  command -v "$t" >/dev/null || { echo "make-seeds: $t not found (apt-get install qemu-utils python3)" >&2; exit 1; }
done

T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
IMG=corpus/image
HDR=corpus/header
rm -rf "$IMG" "$HDR"
mkdir -p "$IMG" "$HDR"
q() { qemu-img "$@" >/dev/null; }
qio() { local img=$1; shift; local args=(); for c in "$@"; do args+=(-c "$c"); done; qemu-io -f qcow2 "${args[@]}" "$img" >/dev/null; }

# A 1 MiB guest with text, a pattern, a run of pseudo-random bytes and zeros.
python3 - "$T/src.raw" <<'EOF'
import sys, random
r = random.Random(7)
b = bytearray(1 << 20)
text = b"qvet fuzz seed: the quick brown fox jumps over the lazy dog\n" * 40
b[0:len(text)] = text
b[64 << 10:(64 << 10) + 4096] = b"\xaa" * 4096
b[300 << 10:(300 << 10) + 3000] = bytes(r.getrandbits(8) for _ in range(3000))
b[(1 << 20) - 512:] = b"end of guest\n".ljust(512, b"\x00")
open(sys.argv[1], "wb").write(b)
EOF

# --- qcow2 images -------------------------------------------------------------
q convert -O qcow2 -o cluster_size=512 "$T/src.raw" "$T/plain-c512.qcow2"
q convert -O qcow2 -o cluster_size=4096 "$T/src.raw" "$T/plain-c4k.qcow2"
q convert -c -O qcow2 -o cluster_size=512,compression_type=zlib "$T/src.raw" "$T/zlib-c512.qcow2"
q convert -c -O qcow2 -o cluster_size=4096,compression_type=zlib "$T/src.raw" "$T/zlib-c4k.qcow2"
q convert -c -O qcow2 -o cluster_size=512,compression_type=zstd "$T/src.raw" "$T/zstd-c512.qcow2"
q convert -c -O qcow2 -o cluster_size=4096,compression_type=zstd "$T/src.raw" "$T/zstd-c4k.qcow2"
q convert -O qcow2 -o compat=0.10,cluster_size=512 "$T/src.raw" "$T/v2-c512.qcow2"
q convert -c -O qcow2 -o compat=0.10,cluster_size=512 "$T/src.raw" "$T/v2-zlib-c512.qcow2"

# Extended L2: 16 KiB clusters of 32 subclusters, partly written and zeroed.
q create -f qcow2 -o cluster_size=16k,extended_l2=on "$T/extl2-c16k.qcow2" 1M
qio "$T/extl2-c16k.qcow2" "write -P 0x11 2k 1k" "write -P 0x22 40k 512" "write -z 64k 4k" "write -z 128k 32k"
q create -f qcow2 -o cluster_size=16k,extended_l2=on,compression_type=zstd "$T/extl2-zstd-c16k.qcow2" 1M
qio "$T/extl2-zstd-c16k.qcow2" "write -c -P 0x33 0 16k" "write -P 0x44 20k 1k"

# A hand-made extended L2 image laid out to stay under 64 KiB (qemu's own
# puts the first L2 table past 64 KiB): header, L1 at 16 KiB, L2 at 32 KiB,
# data at 48 KiB, refcount table past the end (reads as zeros). Entries:
# cluster 0 partly allocated and partly zero subclusters, cluster 1
# compressed (deflate), cluster 2 all-zero subclusters, cluster 3 the upper
# half allocated. The "-bad" variant adds an entry with a subcluster both
# allocated and zero, which qemu refuses to read.
python3 - "$T/extl2-crafted-c16k.qcow2" "$T/extl2-crafted-bad.qcow2" <<'PY'
import struct, sys, zlib
cs = 16 << 10
def build(bad):
    img = bytearray(3 * cs)
    hdr = struct.pack(">IIQIIQIIQQIIQQQQII", 0x514649FB, 3, 0, 0, 14, 1 << 20, 0, 1,
                      cs, 64 * cs, 1, 0, 0, 1 << 4, 0, 0, 4, 112)
    img[0:len(hdr)] = hdr
    struct.pack_into(">Q", img, cs, (2 * cs) | (1 << 63))
    data = bytes((i * 7 + 3) & 0xFF for i in range(2048))
    text = (b"compressed extended-L2 cluster " * 600)[:cs]
    co = zlib.compressobj(9, zlib.DEFLATED, -12)
    comp = co.compress(text) + co.flush()
    chost = 3 * cs + 2048
    extra = (chost % 512 + len(comp) + 511) // 512 - 1
    entries = [
        ((3 * cs) | (1 << 63), 0x0000000F | (0x3 << 40)),
        ((1 << 62) | (extra << 56) | chost, 0),
        (0, 0xFFFFFFFF << 32),
        ((3 * cs) | (1 << 63), 0xFFFF0000),
    ]
    if bad:
        entries.append(((3 * cs) | (1 << 63), 0x1 | (0x1 << 32)))
    for i, (w0, w1) in enumerate(entries):
        struct.pack_into(">QQ", img, 2 * cs + 16 * i, w0, w1)
    img += data + comp
    return bytes(img)
open(sys.argv[1], "wb").write(build(False))
open(sys.argv[2], "wb").write(build(True))
PY

# Zero clusters, partial writes and discards on a v3 image.
q convert -O qcow2 -o cluster_size=512 "$T/src.raw" "$T/zero-c512.qcow2"
qio "$T/zero-c512.qcow2" "write -z 0 2k" "write -z -u 64k 4k" "discard 300k 1k" "write -P 0x55 700k 700"

# Internal snapshots: data changed after the first, then a second one.
q convert -O qcow2 -o cluster_size=512 "$T/src.raw" "$T/snap-c512.qcow2"
q snapshot -c first "$T/snap-c512.qcow2"
qio "$T/snap-c512.qcow2" "write -P 0x66 0 1k" "write -z 64k 2k"
q snapshot -c second "$T/snap-c512.qcow2"
qio "$T/snap-c512.qcow2" "write -P 0x77 900k 512"

# A backing file name (never opened by the harness) with a format extension.
q create -f qcow2 -o cluster_size=512 "$T/base.qcow2" 1M
q create -f qcow2 -o cluster_size=512 -b base.qcow2 -F qcow2 "$T/backing-c512.qcow2"
qio "$T/backing-c512.qcow2" "write -P 0x88 4k 1k"
q create -f qcow2 -o compat=0.10,cluster_size=512 -b base.qcow2 -F qcow2 "$T/backing-v2-c512.qcow2"

# External data file (never opened by the harness).
q create -f qcow2 -o cluster_size=512,data_file="$T/data.raw",data_file_raw=on "$T/datafile-c512.qcow2" 1M
qio "$T/datafile-c512.qcow2" "write -P 0x99 0 1k"

# Refcount widths, lazy refcounts, persistent bitmaps.
q convert -O qcow2 -o cluster_size=512,refcount_bits=1 "$T/src.raw" "$T/refcount1-c512.qcow2"
q convert -O qcow2 -o cluster_size=512,refcount_bits=64 "$T/src.raw" "$T/refcount64-c512.qcow2"
q convert -O qcow2 -o cluster_size=512,lazy_refcounts=on "$T/src.raw" "$T/lazy-c512.qcow2"
q create -f qcow2 -o cluster_size=1024 "$T/bitmap-c1k.qcow2" 1M
q bitmap --add "$T/bitmap-c1k.qcow2" b0
q bitmap --add -g 65536 "$T/bitmap-c1k.qcow2" b1
qio "$T/bitmap-c1k.qcow2" "write -P 0xbb 128k 8k" "write -P 0xcc 900k 1k"
q bitmap --disable "$T/bitmap-c1k.qcow2" b1

# LUKS encryption (the key material makes it large; cut to 64 KiB below).
q create -f qcow2 --object secret,id=sec0,data=fuzz \
  -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=4096 \
  "$T/luks-c4k.qcow2" 1M

# --- cut each image to < 64 KiB -------------------------------------------------
LIMIT=$((64 * 1024 - 1))
for img in "$T"/*.qcow2; do
  name=$(basename "$img")
  [ "$name" = base.qcow2 ] && continue
  cut=$T/cut-$name
  python3 - "$img" "$cut" <<'EOF'
import sys
b = open(sys.argv[1], "rb").read()
end = len(b.rstrip(b"\x00"))
end = -(-end // 512) * 512
open(sys.argv[2], "wb").write(b[:end])
EOF
  if [ "$name" = extl2-crafted-bad.qcow2 ] && [ "$(stat -c %s "$cut")" -le $LIMIT ]; then
    cp "$cut" "$IMG/$name"
  elif [ "$(stat -c %s "$cut")" -le $LIMIT ] \
    && qemu-img compare -q -f qcow2 -F qcow2 "$img" "$cut" 2>/dev/null; then
    cp "$cut" "$IMG/$name"
  else
    head -c $LIMIT "$img" > "$IMG/broken-$name"
  fi
done

# --- raw and near-qcow2 inputs ------------------------------------------------
head -c 2048 "$T/src.raw" > "$IMG/text.raw"
: > "$IMG/empty"
printf 'QFI\xfb\x00\x00\x00\x01' > "$IMG/qcow-v1-magic"
printf 'QFI\xfb\x00\x00\x00\x04' > "$IMG/qcow-v4-magic"
printf 'QFI\xfb\x00\x00\x00' > "$IMG/short-magic"

# --- mutated headers (on the 512-byte-cluster plain image) --------------------
python3 - "$IMG/plain-c512.qcow2" "$IMG" <<'EOF'
import struct, sys, os
base = bytearray(open(sys.argv[1], "rb").read())
out = sys.argv[2]
def put(name, edits):
    b = bytearray(base)
    for off, fmt, val in edits:
        struct.pack_into(">" + fmt, b, off, val)
    open(os.path.join(out, "mut-" + name), "wb").write(b)
# Header offsets (qcow2.rst): 4 version, 8 backing_file_offset, 16
# backing_file_size, 20 cluster_bits, 24 size, 32 crypt_method, 36 l1_size,
# 40 l1_table_offset, 48 refcount_table_offset, 56 refcount_table_clusters,
# 60 nb_snapshots, 64 snapshots_offset, 72 incompatible, 80 compatible,
# 88 autoclear, 96 refcount_order, 100 header_length, 104 compression_type.
put("cluster-bits-22", [(20, "I", 22)])
put("cluster-bits-8", [(20, "I", 8)])
put("size-huge", [(24, "Q", 1 << 62)])
put("size-unaligned", [(24, "Q", (1 << 20) + 1)])
put("l1-size-huge", [(36, "I", 0x7FFFFFFF)])
put("l1-size-zero", [(36, "I", 0)])
put("l1-offset-unaligned", [(40, "Q", 0x201)])
put("l1-offset-past-eof", [(40, "Q", 1 << 40)])
put("reftable-unaligned", [(48, "Q", 0x1FF)])
put("reftable-clusters-huge", [(56, "I", 0xFFFFFFFF)])
put("refcount-order-7", [(96, "I", 7)])
put("incompat-all", [(72, "Q", (1 << 64) - 1)])
put("incompat-dirty-corrupt", [(72, "Q", 3)])
put("incompat-datafile-no-name", [(72, "Q", 4)])
put("incompat-extl2-small-cluster", [(72, "Q", 16)])
put("compression-type-5", [(72, "Q", 8), (104, "B", 5)])
put("autoclear-all", [(88, "Q", (1 << 64) - 1)])
put("header-length-huge", [(100, "I", 0xFFFFFFFF)])
put("header-length-105", [(100, "I", 105)])
put("header-length-small", [(100, "I", 72)])
put("backing-name-too-long", [(8, "Q", 0x100), (16, "I", 2000)])
put("backing-name-past-cluster", [(8, "Q", 0x1F0), (16, "I", 64)])
put("snapshots-huge", [(60, "I", 0xFFFFFFFF), (64, "Q", 0x200)])
put("snapshots-unaligned", [(60, "I", 1), (64, "Q", 0x203)])
put("crypt-aes", [(32, "I", 1)])
put("crypt-7", [(32, "I", 7)])
put("version-2-with-v3-fields", [(4, "I", 2)])
put("version-9", [(4, "I", 9)])
# An extension whose length runs past the header cluster.
b = bytearray(base)
hl = struct.unpack_from(">I", b, 100)[0]
struct.pack_into(">II", b, hl, 0xE2792ACA, 0xFFFFFF00)
open(os.path.join(out, "mut-ext-length-huge"), "wb").write(b)
EOF

# --- header seeds: the first 4 KiB of every qcow2-looking image seed ------------
for f in "$IMG"/*; do
  if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 514649fb ]; then
    head -c 4096 "$f" > "$HDR/$(basename "$f")"
  fi
done

echo "image seeds:  $(ls "$IMG" | wc -l), $(du -sb "$IMG" | cut -f1) bytes, largest $(ls -S "$IMG" | head -1) ($(stat -c %s "$IMG/$(ls -S "$IMG" | head -1)") bytes)"
echo "header seeds: $(ls "$HDR" | wc -l), $(du -sb "$HDR" | cut -f1) bytes"

# --- guest seeds: small squashfs images (whole-disk filesystems) ---------------
# Only the squashfs-* seeds are regenerated; the other guest seeds are kept.
if command -v mksquashfs >/dev/null; then
  GST=corpus/guest
  rm -f "$GST"/squashfs-*
  S="$T/sq-src"
  mkdir -p "$S/dir/sub" "$S/empty"
  printf 'hello squashfs\n' > "$S/hello.txt"
  python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 7 + 3) & 255 for i in range(9000)))' > "$S/dir/pattern.bin"
  head -c 8192 /dev/zero > "$S/dir/zeros"
  : > "$S/dir/sub/empty-file"
  for i in $(seq 1 40); do printf '%s\n' "$i" > "$S/dir/sub/f$i"; done
  ln -s ../hello.txt "$S/dir/link"
  mkdir -p "$S/etc" && printf 'root:x:0:0:root:/root:/bin/sh\n' > "$S/etc/passwd"
  sq() { local name=$1; shift
    mksquashfs "$S" "$GST/squashfs-$name" -noappend -quiet -no-progress -b 4096 \
      -all-time 1700000000 -mkfs-time 1700000000 -p "dev d 755 0 0" -p "dev/null c 666 0 0 1 3" "$@" >/dev/null; }
  sq gzip
  sq xz -comp xz
  sq zstd -comp zstd
  sq lz4 -comp lz4
  sq lzo -comp lzo
  sq stored -noI -noD -noF -noX
  sq nofrag -comp zstd -no-fragments
  # VyOS layout: the squashfs as a file in an ext2 partition.
  rm -f "$GST/ext2-with-squashfs-file"
  mkdir -p "$T/nest/boot/1.3.2"
  cp "$GST/squashfs-gzip" "$T/nest/boot/1.3.2/1.3.2.squashfs"
  PATH="$PATH:/usr/sbin:/sbin" mke2fs -q -F -t ext2 -b 1024 -N 16 -E root_owner=0:0 -d "$T/nest" "$T/nest.img" 64K
  python3 - "$T/nest.img" "$GST/ext2-with-squashfs-file" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
n = (len(b.rstrip(b"\0")) + 1023) // 1024 * 1024
open(sys.argv[2], "wb").write(b[:n])
PY
  echo "guest squashfs seeds: $(ls "$GST"/squashfs-* | wc -l), $(cat "$GST"/squashfs-* | wc -c) bytes"
fi
