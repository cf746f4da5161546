#!/usr/bin/env bash
# Benchmark (not a test): the shared PostgreSQL catalog against SQLite.
#
#   (a) `qvet scan` of 1,000 small images (64 KiB each, in 4 directories)
#       from 4 concurrent processes (one directory each, as 4 hosts) into
#       PostgreSQL, vs the same 1,000 images scanned by one process into
#       SQLite; the ratio PostgreSQL / SQLite is printed (target <= 1.5);
#   (b) `qvet fleet` over 100,000 scan results (20 hosts, 30,000 distinct
#       contents, every tenth an overlay), from PostgreSQL and, after
#       `catalog export | import`, from SQLite, JSON and human output
#       (target < 1 s).
#
# A throw-away PostgreSQL cluster is started in BENCH_DIR on a free port
# (as the `postgres` user when run as root) and stopped on exit. Each scan
# starts from an empty catalog; the best of BENCH_RUNS wall-clock times is
# reported.
#
# Environment:
#   BENCH_DIR    work dir                                   (/tmp/qvet-bench-fleet)
#   BENCH_RUNS   timed runs per command (best of)           (3)
#   QVET_BIN     a prebuilt qvet binary (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."

W=${BENCH_DIR:-/tmp/qvet-bench-fleet}
N=${BENCH_RUNS:-3}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [ -n "${QVET_BIN:-}" ]; then
  Q=$QVET_BIN
else
  cargo build --release -q -p qvet
  Q="${CARGO_TARGET_DIR:-target}/release/qvet"
fi
[ -x "$Q" ] || die "no qvet binary at $Q"

bin=""
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
  bin=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
else
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
fi
[ -n "$bin" ] && [ -x "$bin/initdb" ] || die "PostgreSQL server not found (apt-get install postgresql)"

rm -rf "$W"
mkdir -p "$W"
as=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$W"
  as=(runuser -u postgres --)
fi
port=$((20000 + RANDOM % 20000))
"${as[@]}" "$bin/initdb" -D "$W/pg" -U bench -A trust --no-sync -E UTF8 >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$W/pg" -l "$W/pg.log" -w \
  -o "-p $port -k $W -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >/dev/null
trap '"${as[@]}" "$bin/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true' EXIT
export PGOPTIONS="-c client_min_messages=warning"
psql() { "$bin/psql" -X -q -A -t -h 127.0.0.1 -p "$port" -U bench -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE scan" -c "CREATE DATABASE fleet"
PG="postgres://bench@127.0.0.1:$port"

# 1,000 images of 64 KiB, distinct contents.
mkdir -p "$W/img"
for d in 0 1 2 3; do
  mkdir -p "$W/img/d$d"
  for i in $(seq 0 249); do
    head -c 65536 /dev/urandom > "$W/img/d$d/i$i.img"
  done
done
log "1000 images in $W/img"

now() { date +%s.%N; }
best() { sort -g | head -n1; }

sqlite_times=()
pg_times=()
for _ in $(seq "$N"); do
  rm -f "$W/c.sqlite"
  t0=$(now)
  "$Q" scan -q --catalog "$W/c.sqlite" --host one "$W/img" >/dev/null || [ $? -eq 3 ]
  t1=$(now)
  sqlite_times+=("$(echo "$t1 - $t0" | bc)")

  psql -d scan -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
  "$Q" catalog --catalog "$PG/scan" migrate >/dev/null
  t0=$(now)
  pids=()
  for d in 0 1 2 3; do
    "$Q" scan -q --catalog "$PG/scan" --host "host$d" "$W/img/d$d" >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || [ $? -eq 3 ] || die "a scan failed"; done
  t1=$(now)
  pg_times+=("$(echo "$t1 - $t0" | bc)")
done
rows=$(psql -d scan -c "SELECT count(*) FROM scan_results")
[ "$rows" = 1000 ] || die "PostgreSQL holds $rows scan results, not 1000"
s=$(printf '%s\n' "${sqlite_times[@]}" | best)
p=$(printf '%s\n' "${pg_times[@]}" | best)
printf 'scan 1000 images: SQLite 1 process %.2f s; PostgreSQL 4 processes %.2f s; ratio %.2f (target <= 1.5)\n' \
  "$s" "$p" "$(echo "$p / $s" | bc -l)"

# 100,000 scan results.
"$Q" catalog --catalog "$PG/fleet" migrate >/dev/null
psql -d fleet -c "
INSERT INTO scan_results (host, path, size, mtime_ns, inode, digests, verdict, verdict_name,
    digest_key, backing, label, scanned_at)
SELECT 'host' || (i % 20),
       '/images/d' || (i / 1000) || '/img' || i || '.qcow2',
       1048576 + (i % 30000), i, i,
       '{\"md5\":\"' || md5((i % 30000)::text) || '\"}',
       '{}',
       CASE WHEN i % 7 = 0 THEN 'genuine' WHEN i % 11 = 0 THEN 'mismatch' ELSE 'unknown' END,
       'md5:' || md5((i % 30000)::text),
       CASE WHEN i % 10 = 0 THEN '/images/d0/img' || (i % 1000) || '.qcow2' END,
       CASE WHEN i % 7 = 0 THEN 'vendor image ' || (i % 50) END,
       extract(epoch FROM now())::bigint - (i % 60) * 86400
FROM generate_series(0, 99999) AS i"
timeit() {
  local out=() t0 t1
  for _ in $(seq "$N"); do
    t0=$(now); "$@" >/dev/null; t1=$(now)
    out+=("$(echo "$t1 - $t0" | bc)")
  done
  printf '%s\n' "${out[@]}" | best
}
fj=$(timeit "$Q" fleet --catalog "$PG/fleet" --output json)
fh=$(timeit "$Q" fleet --catalog "$PG/fleet")
"$Q" catalog --catalog "$PG/fleet" export "$W/fleet.jsonl" >/dev/null
t0=$(now); "$Q" catalog --catalog "$W/fleet.sqlite" import "$W/fleet.jsonl" >/dev/null; t1=$(now)
imp=$(echo "$t1 - $t0" | bc)
sj=$(timeit "$Q" fleet --catalog "$W/fleet.sqlite" --output json)
sh=$(timeit "$Q" fleet --catalog "$W/fleet.sqlite")
printf 'fleet over 100000 rows: PostgreSQL json %.2f s, human %.2f s; SQLite json %.2f s, human %.2f s (target < 1 s)\n' \
  "$fj" "$fh" "$sj" "$sh"
printf 'import of the 100000-row export into SQLite: %.2f s\n' "$imp"
