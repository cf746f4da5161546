#!/usr/bin/env bash
# Benchmark (not a test) of `qvet audit --output json IMG` (one verdict per
# image: dpkg md5sums of every packaged file, accounts, ssh keys, cron,
# systemd units, setuid files, ...) on a realistic Debian disk, against
# Fox-IT's dissect.target as the anchor.
#
# The disk (built once, cached in BENCH_DIR): 2 GiB, an MBR with one Linux
# partition at 1 MiB holding ext4 (`mke2fs -d`, no root needed) with a Debian
# root made from THIS machine's own packaged files: the `required` packages
# plus systemd and their dependencies, then `important` ones, then small
# others, BENCH_PACKAGES in all (115); every path `dpkg -L` lists for them, the
# dpkg database for them (status stanzas, info/*.list, *.md5sums,
# *.conffiles, diversions), the host's /etc/passwd and /etc/group, a
# synthetic /etc/shadow and /etc/gshadow (every hash `*`; the host's are never
# read), /etc/os-release, and, so that the key and cron checks have something
# to find, a synthetic root authorized_keys and /etc/crontab. Stored as raw
# and as uncompressed qcow2.
#
# Targets (issue): qvet audit <= 1.0 s wall and <= 128 MiB peak RSS on 2
# cores, best of BENCH_RUNS, on both images; and >= 20x faster than the union
# of `target-query -f users,passwords,cronjobs,services,suid_binaries,
# openssh.authorized_keys` on the same image (ratio qvet/dissect <= 0.05).
# Each dissect query is also timed alone, for reference. MISS is reported,
# not an error; the script exits non-zero only when qvet audit cannot run or
# its output is not JSON.
#
# Environment:
#   BENCH_DIR             work dir, image + venv cached here         (/tmp/qvet-bench)
#   BENCH_RUNS            timed qvet runs per image (best of)        (3)
#   BENCH_PACKAGES        packages in the Debian root                (115)
#   BENCH_SKIP_DISSECT    1: do not run (or install) dissect         (0)
#   BENCH_DISSECT_VENV    venv with dissect.target + dissect.extfs   ($BENCH_DIR/dissect-venv)
#                         (created with python3 -m venv + pip when missing)
#   BENCH_DISSECT_RUNS    timed runs of each dissect command         (1)
#   BENCH_DISSECT_EACH    0: time only the union, not each query     (1)
#   BENCH_DISSECT_TIMEOUT seconds before a dissect command is given up (900)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

W=${BENCH_DIR:-/tmp/qvet-bench}
N=${BENCH_RUNS:-3}
NPKG=${BENCH_PACKAGES:-115}
SKIP_DISSECT=${BENCH_SKIP_DISSECT:-0}
VENV=${BENCH_DISSECT_VENV:-$W/dissect-venv}
ND=${BENCH_DISSECT_RUNS:-1}
EACH=${BENCH_DISSECT_EACH:-1}
DT=${BENCH_DISSECT_TIMEOUT:-900}
QUERIES=(users passwords cronjobs services suid_binaries openssh.authorized_keys)
T_SECS=1.0 T_MIB=128 T_RATIO=0.05

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

PATH=$PATH:/usr/sbin:/sbin
for tool in qemu-img mke2fs python3 dpkg-query tar; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-utils e2fsprogs python3)"
done
[ "$N" -ge 1 ] 2>/dev/null || die "BENCH_RUNS must be a positive integer"
[ "$NPKG" -ge 1 ] 2>/dev/null || die "BENCH_PACKAGES must be a positive integer"
[ "$ND" -ge 1 ] 2>/dev/null || die "BENCH_DISSECT_RUNS must be a positive integer"
mkdir -p "$W/img" "$W/out"

# --- the Debian disk -----------------------------------------------------------
name=debian-2G-${NPKG}p
raw=$W/img/$name.raw
qcow=$W/img/$name.qcow2
facts=$W/img/$name.facts
stage=$W/debian-stage
cleanup() { rm -rf "$stage" "$W/img/$name.ext4" "$raw.tmp" "$qcow.tmp"; }
trap cleanup EXIT

# Picks the packages and writes, into DIR: packages, paths (NUL-separated,
# relative to /), status and diversions (filtered to those packages).
stage_py=$W/out/debian-stage.py
cat >"$stage_py" <<'EOF'
import os, subprocess, sys

want, outdir = int(sys.argv[1]), sys.argv[2]
q = subprocess.run(
    ["dpkg-query", "-W", "-f=${Package}\t${Architecture}\t${Priority}\t${Installed-Size}\t"
     "${db:Status-Status}\t${Depends}\t${Pre-Depends}\t${Provides}\n"],
    capture_output=True, text=True, check=True).stdout
pk, prov = {}, {}
for line in q.splitlines():
    name, arch, prio, size, status, dep, pre, provides = line.split("\t")
    if status != "installed" or name in pk:
        continue
    pk[name] = dict(arch=arch, prio=prio, size=int(size or 0),
                    deps=[c.strip() for c in (dep + "," + pre).split(",") if c.strip()])
    for p in provides.split(","):
        p = p.strip().split(" ")[0]
        if p:
            prov.setdefault(p, name)

def resolve(alt):
    n = alt.strip().split(" ")[0].split(":")[0]
    return n if n in pk else prov.get(n)

def closure(seed, have=frozenset()):
    """seed and its installed dependencies (first installed alternative), less have."""
    sel, todo = set(), list(seed)
    while todo:
        n = todo.pop()
        if n in sel or n in have:
            continue
        sel.add(n)
        for clause in pk[n]["deps"]:
            for alt in clause.split("|"):
                r = resolve(alt)
                if r:
                    todo.append(r)
                    break
    return sel

# 1. required + systemd (what a Debian 12 install boots with) + deps; 2. the
# important ones (with deps), cheapest first; 3. any other package whose
# missing deps fit, fewest and smallest first; until `want`.
sel = closure([n for n, p in pk.items() if p["prio"] == "required"]
              + [n for n in ("systemd", "systemd-sysv") if n in pk])
for tier in (lambda p: p["prio"] == "important", lambda p: True):
    while len(sel) < want:
        best = None
        for n in sorted(pk):
            if n in sel or not tier(pk[n]):
                continue
            add = closure([n], sel)
            cost = (len(add), sum(pk[a]["size"] for a in add), n)
            if len(sel) + len(add) <= want and (best is None or cost < best[0]):
                best = (cost, add)
        if best is None:
            break
        sel |= best[1]

# Their paths, with directory symlinks resolved as on the host (/bin/ls is
# copied as usr/bin/ls on a merged-/usr system; /bin itself, which dpkg also
# lists, is copied as the symlink it is). Unreadable files are skipped.
paths, closed = set(), set()  # closed: directories this user cannot list
for n in sorted(sel):
    out = subprocess.run(["dpkg-query", "-L", n], capture_output=True, text=True).stdout
    for p in out.splitlines():
        if not p.startswith("/") or p == "/.":
            continue  # "diverted by" notes
        d, b = os.path.split(p)
        c = os.path.join(os.path.realpath(d), b)
        if os.path.isdir(c) and not os.path.islink(c) and not os.access(c, os.R_OK | os.X_OK):
            closed.add(c.lstrip("/"))
        elif os.path.islink(c) or os.path.isdir(c) or (os.path.isfile(c) and os.access(c, os.R_OK)):
            paths.add(c.lstrip("/"))
for n in sel:
    for a in ("", ":" + pk[n]["arch"]):
        for ext in ("list", "md5sums", "conffiles"):
            f = f"/var/lib/dpkg/info/{n}{a}.{ext}"
            if os.path.isfile(f) and os.access(f, os.R_OK):
                paths.add(f.lstrip("/"))
with open(os.path.join(outdir, "paths"), "wb") as f:
    f.write(b"".join(p.encode() + b"\0" for p in sorted(paths)))
with open(os.path.join(outdir, "closed-dirs"), "wb") as f:
    f.write(b"".join(p.encode() + b"\0" for p in sorted(closed)))
with open(os.path.join(outdir, "packages"), "w") as f:
    f.write("".join(n + "\n" for n in sorted(sel)))

keep = []
for s in open("/var/lib/dpkg/status").read().split("\n\n"):
    pkg = next((l[9:] for l in s.splitlines() if l.startswith("Package: ")), None)
    if pkg in sel:
        keep.append(s.strip("\n"))
with open(os.path.join(outdir, "status"), "w") as f:
    f.write("\n\n".join(keep) + "\n")
d = open("/var/lib/dpkg/diversions").read().splitlines() if os.path.exists("/var/lib/dpkg/diversions") else []
with open(os.path.join(outdir, "diversions"), "w") as f:
    f.write("".join("\n".join(d[i:i + 3]) + "\n" for i in range(0, len(d) - 2, 3)
                    if d[i + 2] in sel or d[i + 2] == ":"))
EOF

build_disk() {
  local t0 meta tree npk npath bytes fs_mib
  t0=$(date +%s.%N)
  rm -rf "$stage"
  meta=$stage/meta tree=$stage/root
  mkdir -p "$meta" "$tree"
  log "building $raw: picking $NPKG packages"
  python3 "$stage_py" "$NPKG" "$meta"
  npk=$(wc -l <"$meta/packages")
  log "copying their $(tr -cd '\0' <"$meta/paths" | wc -c) paths"
  tar -C / --null --no-recursion -T "$meta/paths" -cf - 2>"$W/out/tar.stderr" |
    tar -C "$tree" -xpf - || die "copying the packaged files failed: $(head -c 300 "$W/out/tar.stderr")"
  # Directories tar cannot open as this user (/root, ...): made empty, with
  # the host's mode and mtime, children before parents.
  while IFS= read -r -d '' d; do mkdir -p "$tree/$d"; done <"$meta/closed-dirs"
  while IFS= read -r d; do
    chmod "$(stat -c %a "/$d")" "$tree/$d"
    touch -h -r "/$d" "$tree/$d"
  done < <(tr '\0' '\n' <"$meta/closed-dirs" | sort -r)
  # dpkg's database and the accounts.
  mkdir -p "$tree/var/lib/dpkg/info" "$tree/etc" "$tree/root/.ssh"
  for f in status diversions; do
    cp "$meta/$f" "$tree/var/lib/dpkg/$f"
    [ ! -e "/var/lib/dpkg/$f" ] || touch -r "/var/lib/dpkg/$f" "$tree/var/lib/dpkg/$f"
  done
  cp -p /etc/passwd /etc/group "$tree/etc/"
  [ -e "$tree/etc/os-release" ] || cp -a /etc/os-release "$tree/etc/os-release"
  [ -e "$tree/usr/lib/os-release" ] || [ ! -e /usr/lib/os-release ] || cp -a /usr/lib/os-release "$tree/usr/lib/"
  awk -F: '{ print $1 ":*:19800:0:99999:7:::" }' /etc/passwd >"$tree/etc/shadow"
  awk -F: '{ print $1 ":*::" $4 }' /etc/group >"$tree/etc/gshadow"
  chmod 0640 "$tree/etc/shadow" "$tree/etc/gshadow"
  if [ "$(id -u)" = 0 ]; then chgrp shadow "$tree/etc/shadow" "$tree/etc/gshadow" 2>/dev/null || true; fi
  # Synthetic extras: one root ssh key (a well-formed ed25519 public key of
  # bytes 0..31, no private half exists) and a system crontab line.
  python3 -c 'import base64, struct
b = b"ssh-ed25519"; k = bytes(range(32))
print("ssh-ed25519", base64.b64encode(struct.pack(">I", len(b)) + b + struct.pack(">I", 32) + k).decode(), "bench@qvet")' \
    >"$tree/root/.ssh/authorized_keys"
  chmod 0700 "$tree/root" "$tree/root/.ssh"
  chmod 0600 "$tree/root/.ssh/authorized_keys"
  printf 'SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n' >"$tree/etc/crontab"
  npath=$(cd "$tree" && find . -mindepth 1 | wc -l)
  bytes=$(du -sb --apparent-size "$tree" | cut -f1)

  # Partition 1: sectors 2048 .. end of the 2 GiB disk.
  fs_mib=2047
  log "mke2fs -t ext4 -d ($npath paths, $((bytes / 1048576)) MiB) and a 2 GiB disk"
  rm -f "$W/img/$name.ext4" "$raw.tmp"
  mke2fs -q -F -t ext4 -L debian-root -d "$tree" "$W/img/$name.ext4" "${fs_mib}M" >"$W/out/mke2fs.log" 2>&1 ||
    die "mke2fs -d failed: $(tail -n 5 "$W/out/mke2fs.log")"
  truncate -s 2G "$raw.tmp"
  if command -v sfdisk >/dev/null; then
    printf 'label: dos\nlabel-id: 0x51e7d15c\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw.tmp"
  else
    # The same bytes sfdisk writes for that script: disk id, one bootable
    # type-0x83 entry from LBA 2048 for 4192256 sectors (CHS 0/32/33 to
    # 261/21/16, for 255 heads and 63 sectors), 55 AA.
    printf '\x5c\xd1\xe7\x51' | dd of="$raw.tmp" bs=1 seek=440 conv=notrunc status=none
    printf '\x80\x20\x21\x00\x83\x15\x50\x05\x00\x08\x00\x00\x00\xf8\x3f\x00' |
      dd of="$raw.tmp" bs=1 seek=446 conv=notrunc status=none
    printf '\x55\xaa' | dd of="$raw.tmp" bs=1 seek=510 conv=notrunc status=none
  fi
  dd if="$W/img/$name.ext4" of="$raw.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
  rm -f "$W/img/$name.ext4"
  qemu-img convert -O qcow2 "$raw.tmp" "$qcow.tmp"
  mv "$raw.tmp" "$raw"
  mv "$qcow.tmp" "$qcow"
  {
    echo "packages=$npk"
    echo "paths=$npath"
    echo "regular_files=$(cd "$tree" && find . -type f | wc -l)"
    echo "setuid_files=$(cd "$tree" && find . -type f -perm /6000 | wc -l)"
    echo "data_mib=$((bytes / 1048576))"
    echo "build_seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  } >"$facts"
  rm -rf "$stage"
}
if [ ! -s "$raw" ] || [ ! -s "$qcow" ] || [ ! -s "$facts" ]; then
  build_disk
fi
fact() { sed -n "s/^$1=//p" "$facts"; }
sizes="raw $(du -m "$raw" | cut -f1) MiB allocated, qcow2 $(du -m "$qcow" | cut -f1) MiB"
log "disk: $(fact packages) packages, $(fact paths) paths ($(fact regular_files) regular files, $(fact setuid_files) setuid/setgid), $(fact data_mib) MiB of data; $sizes; built in $(fact build_seconds) s"

# --- timing ----------------------------------------------------------------------
# time_one OUT CMD...: runs CMD once (stdout to OUT, stderr to out/last.stderr),
# prints "wall_seconds peak_rss_kib exit_code".
if [ -x /usr/bin/time ]; then
  time_one() {
    local t o=$1 rc=0
    shift
    t=$(mktemp "$W/time.XXXXXX")
    /usr/bin/time -f '%e %M' -o "$t" "$@" >"$o" 2>"$W/out/last.stderr" || rc=$?
    echo "$(tail -n 1 "$t") $rc"
    rm -f "$t"
  }
else
  time_one() {
    python3 - "$W/out/last.stderr" "$@" <<'EOF'
import resource, subprocess, sys, time
o, err, cmd = sys.argv[2], sys.argv[1], sys.argv[3:]
t = time.monotonic()
with open(o, "wb") as out, open(err, "wb") as e:
    rc = subprocess.call(cmd, stdout=out, stderr=e)
w = time.monotonic() - t
print(f"{w:.2f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {rc}")
EOF
  }
fi
# best RUNS CMD...: best-of-RUNS "seconds rss rc" (rss and rc of the best run).
best() {
  local runs=$1 b="" r s
  shift
  for _ in $(seq 1 "$runs"); do
    r=$(time_one /dev/null "$@")
    s=${r%% *}
    log "  $(basename "$1") ${s}s"
    if [ -z "$b" ] || awk -v a="$s" -v c="${b%% *}" 'BEGIN { exit !(a + 0 < c + 0) }'; then b=$r; fi
  done
  echo "$b"
}
# verdict VALUE LIMIT: PASS or MISS.
verdict() { awk -v v="$1" -v l="$2" 'BEGIN { print (v + 0 <= l + 0) ? "PASS" : "MISS" }'; }

rows=()
failed=""
declare -A qsecs=()

# --- qvet audit --------------------------------------------------------------------
log "building qvet (release)"
cargo build --release -q -p qvet
qvet=$root/target/release/qvet
if ! "$qvet" audit --help >/dev/null 2>&1; then
  failed="this qvet has no 'audit' command ('$qvet audit --help' fails); nothing of qvet was timed"
  log "$failed"
  rows+=("qvet audit|both|not run|-|-|-")
else
  for img in "$qcow" "$raw"; do
    kind=${img##*.}
    out=$W/out/audit.$kind.json
    # Untimed run: warms the page cache and keeps the report to check.
    r=$(time_one "$out" "$qvet" audit --output json "$img")
    if ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$out" 2>/dev/null; then
      failed="qvet audit --output json $kind (exit ${r##* }) did not print JSON: $(head -c 300 "$W/out/last.stderr")"
      log "$failed"
      rows+=("qvet audit|$kind|failed|-|-|-")
      continue
    fi
    log "qvet audit $kind: exit ${r##* }, $(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = [str(x.get(k)) for x in (d if isinstance(d, list) else [d]) if isinstance(x, dict) for k in ("verdict", "status") if k in x]
print(("verdict " + ", ".join(v) + "; " if v else "") + "%d bytes of JSON" % len(open(sys.argv[1], "rb").read()))' "$out")"
    log "qvet audit --output json ($kind), best of $N"
    q=$(best "$N" "$qvet" audit --output json "$img")
    read -r s k _ <<<"$q"
    qsecs[$kind]=$s
    rows+=("qvet audit|$kind|$s $(verdict "$s" "$T_SECS")|$((k / 1024)) $(verdict "$k" "$((T_MIB * 1024))")|-|<= ${T_SECS}s, <= ${T_MIB} MiB")
  done
fi

# --- the anchor: dissect.target ----------------------------------------------------
dissect_ok() { "$VENV/bin/python" -c 'import dissect.target, dissect.extfs, dissect.hypervisor' 2>/dev/null; }
if [ "$SKIP_DISSECT" = 1 ]; then
  log "dissect: skipped (BENCH_SKIP_DISSECT=1)"
  rows+=("dissect union|-|SKIP (BENCH_SKIP_DISSECT=1)|-|-|-")
else
  if ! dissect_ok; then
    log "dissect: creating $VENV (pip install dissect.target dissect.extfs)"
    { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q dissect.target dissect.extfs; } >"$W/out/pip.log" 2>&1 || true
  fi
  if ! dissect_ok || [ ! -x "$VENV/bin/target-query" ]; then
    log "dissect: SKIP: could not install dissect.target into $VENV (see $W/out/pip.log: $(tail -n 1 "$W/out/pip.log" 2>/dev/null))"
    rows+=("dissect union|-|SKIP (pip install failed)|-|-|-")
  else
    tq=$VENV/bin/target-query
    dver=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("dissect.target"))')
    # qcow2 first; raw if dissect cannot open the qcow2 (or finds no users in it).
    dimg=""
    for img in "$qcow" "$raw"; do
      r=$(time_one "$W/out/dissect.users.jsonl" timeout "$DT" "$tq" --no-cache -q -j -f users "$img")
      if [ "${r##* }" = 0 ] && grep -q '"name"' "$W/out/dissect.users.jsonl"; then
        dimg=$img
        break
      fi
      log "dissect cannot read ${img##*.} (exit ${r##* }): $(head -c 300 "$W/out/last.stderr")"
    done
    if [ -z "$dimg" ]; then
      rows+=("dissect union|-|SKIP (opens neither image)|-|-|-")
    else
      dkind=${dimg##*.}
      log "dissect.target $dver on $dkind (one warm-up run of -f users done)"
      if [ "$EACH" = 1 ]; then
        for f in "${QUERIES[@]}"; do
          b=""
          for _ in $(seq 1 "$ND"); do
            r=$(time_one "$W/out/dissect.$f.jsonl" timeout "$DT" "$tq" --no-cache -q -j -f "$f" "$dimg")
            if [ -z "$b" ] || awk -v a="${r%% *}" -v c="${b%% *}" 'BEGIN { exit !(a + 0 < c + 0) }'; then b=$r; fi
          done
          read -r s k rc <<<"$b"
          n=$(grep -c . "$W/out/dissect.$f.jsonl" || true)
          [ "$rc" = 0 ] || s=">$s"
          log "  -f $f: ${s}s, $n records, exit $rc"
          rows+=("dissect -f $f|$dkind|$s|$((k / 1024))|$n records|report")
        done
      fi
      union=$(IFS=,; echo "${QUERIES[*]}")
      log "dissect union: target-query -f $union"
      b=""
      for _ in $(seq 1 "$ND"); do
        r=$(time_one "$W/out/dissect.union.jsonl" timeout "$DT" "$tq" --no-cache -q -j -f "$union" "$dimg")
        if [ -z "$b" ] || awk -v a="${r%% *}" -v c="${b%% *}" 'BEGIN { exit !(a + 0 < c + 0) }'; then b=$r; fi
      done
      read -r s k rc <<<"$b"
      n=$(grep -c . "$W/out/dissect.union.jsonl" || true)
      log "  union: ${s}s, $n records, exit $rc"
      if [ "$rc" != 0 ]; then
        log "  dissect union failed or timed out: $(head -c 300 "$W/out/last.stderr")"
        rows+=("dissect union|$dkind|>$s (exit $rc)|$((k / 1024))|-|<= $T_RATIO")
      else
        ratio=n/a
        if [ -n "${qsecs[$dkind]:-}" ]; then
          ratio=$(awk -v q="${qsecs[$dkind]}" -v d="$s" 'BEGIN { printf "%.4f", q / d }')
          ratio="$ratio $(verdict "$ratio" "$T_RATIO")"
        fi
        rows+=("dissect union|$dkind|$s|$((k / 1024))|$ratio|<= $T_RATIO")
      fi
    fi
  fi
fi

echo
echo "qvet audit benchmark: $(nproc) cores (targets are for 2); qvet best of $N, dissect best of $ND; wall seconds"
echo "disk: Debian root of $(fact packages) packages, $(fact paths) paths ($(fact regular_files) files, $(fact setuid_files) setuid/setgid, $(fact data_mib) MiB) in ext4 on a 2 GiB disk; $sizes"
printf '%-34s %-6s %-28s %-14s %-14s %s\n' command image "best s" "peak RSS MiB" "qvet/dissect" target
for r in "${rows[@]}"; do
  IFS='|' read -r c i s m ra ta <<<"$r"
  printf '%-34s %-6s %-28s %-14s %-14s %s\n' "$c" "$i" "$s" "$m" "$ra" "$ta"
done
if [ -n "$failed" ]; then
  echo
  echo "FAILED: $failed"
  exit 1
fi
