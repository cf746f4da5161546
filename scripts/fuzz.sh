#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each, one after the
# other, on the stable toolchain (--sanitizer none: no nightly needed) with
# debug assertions on, so arithmetic overflow panics too.
#
# Seeds are read from fuzz/corpus/<target>/ and never written: new inputs go
# to FUZZ_WORK/<target>/ (kept between runs) so the committed corpus stays
# small. Crashing inputs land in fuzz/artifacts/<target>/; replay them (and
# the seeds) without cargo-fuzz with
#   cargo test -p qvet --test fuzz_corpus
#
# Environment:
#   FUZZ_SECONDS   seconds per target                       (30)
#   FUZZ_TARGETS   targets to run, space separated          (all: header image check guest journal facts luks)
#   FUZZ_WORK      corpus of new inputs                     (fuzz/target/work-corpus)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (10)
# fuzz/qcow2.dict is the libFuzzer dictionary. Extra arguments are passed to
# libFuzzer (e.g. -max_len=4096).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=${FUZZ_SECONDS:-30}
TARGETS=${FUZZ_TARGETS:-"header image check guest journal facts luks"}
WORK=${FUZZ_WORK:-fuzz/target/work-corpus}
TIMEOUT=${FUZZ_TIMEOUT:-10}

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

status=0
summary=()
for t in $TARGETS; do
  mkdir -p "$WORK/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
  log=$(mktemp)
  echo "== fuzz $t for ${SECONDS_PER}s" >&2
  # check reads whole images: it starts from the image seeds too.
  seeds=()
  [ "$t" = check ] && seeds=(fuzz/corpus/image)
  dict=()
  [ -f fuzz/qcow2.dict ] && dict=(-dict=fuzz/qcow2.dict)
  set +e
  cargo fuzz run "$t" --sanitizer none --debug-assertions \
    "$WORK/$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_PER" -timeout="$TIMEOUT" -print_final_stats=1 "${dict[@]}" "$@" \
    2>&1 | tee "$log" | grep -E '^(#[0-9]+\s+(INITED|DONE)|==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' >&2
  rc=${PIPESTATUS[0]}
  set -e
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  secs=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  if [ "$rc" -eq 0 ]; then
    summary+=("$t: ${runs:-?} runs, ${secs:-?} exec/s, no crash")
  else
    status=1
    summary+=("$t: CRASH after ${runs:-?} runs (exit $rc); input in fuzz/artifacts/$t/, log $log")
    continue
  fi
  rm -f "$log"
done

echo >&2
printf '%s\n' "${summary[@]}"
exit $status
