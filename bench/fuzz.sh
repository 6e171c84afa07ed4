#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, `swiftc -sanitize=fuzzer,address`) of the parsers that read
# untrusted bytes, each for a set time from the seed corpus committed in bench/fuzz/corpus/<target>:
#
#   json       FerryCore's JSON parser (every request body, stored record and REST answer),
#              and that what parses serializes and parses back to the same value
#   signature  the webhook signature check (Ferry-Signature: header, NUL, body)
#   csv        the file connector's CSV reader, and that a value read, written and read again
#              is the same value (FerrySync's CSV.swift and SyncError.swift compiled in)
#
#   filter     a list's querystring (filters, _sort, _fields, _limit, _token), parsed by the
#              server's ListParameters and built into SQL by the SQLite backend's query builder:
#              refused with a 400, or SQL that prepares, binds exactly its arguments and runs
#
#   bench/fuzz.sh                      # 60 s per target
#   SECONDS_PER_TARGET=600 bench/fuzz.sh json
#
# Each target is FerryCore's sources compiled with the fuzzer and AddressSanitizer into one
# binary (no SwiftPM product: every build would pay for it); every target links the
# swift-crypto objects of the debug build, so `swift build` must have run first. New inputs go
# to a work corpus under .build-fuzz/ (the committed seeds stay as they are); a crash leaves its
# input in .build-fuzz/<target>/crash-*, and the script exits 1: make it a regression test.
# Prints a table: target, seconds, runs, coverage (edges), corpus size, crashes.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-60}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(json signature csv filter)
work=.build-fuzz
mkdir -p "$work"
debug=$(swift build --show-bin-path)

core_sources() { ls Sources/FerryCore/*/*.swift; }
# swift-crypto, which FerryCore needs (content hashes, signatures), linked from the debug build's
# objects: `swift build` must have run first.
crypto=()
with_crypto() {
  [ -d "$debug/Crypto.build" ] || { echo "fuzz.sh: run \`swift build\` first (the targets link its swift-crypto objects)" >&2; exit 2; }
  [ ${#crypto[@]} -gt 0 ] && return
  crypto=(-I "$debug/Modules" -Xcc "-I.build/checkouts/swift-crypto/Sources/CCryptoBoringSSL/include")
  while IFS= read -r object; do crypto+=("$object"); done < <(
    ls "$debug"/Crypto.build/*.o "$debug"/CryptoBoringWrapper.build/*.o "$debug"/CCryptoBoringSSLShims.build/*.o
    find "$debug/CCryptoBoringSSL.build" -name '*.o')
}

build() {
  local target=$1 binary=$work/$1/fuzz-$1
  mkdir -p "$work/$target"
  local sources extra=()
  case $target in
    json|signature)
      sources=$(core_sources)
      ;;
    csv)
      sources="$(core_sources) Sources/FerrySync/Model/SyncError.swift Sources/FerrySync/Connectors/File/CSV.swift"
      ;;
    filter)
      # The server's and the store's files, with their imports of Ferry's own modules taken out
      # (everything is one module here); HTTPTypes (KintoError) is linked from the debug build,
      # SQLite through GRDB's module map of the system library.
      [ -d "$debug/HTTPTypes.build" ] || { echo "fuzz.sh: run \`swift build\` first (the filter target links its HTTPTypes objects)" >&2; exit 2; }
      mkdir -p "$work/filter/src"
      local file copy
      for file in Sources/FerryServer/API/ListParameters.swift Sources/FerryServer/Errors/KintoError.swift \
                  Sources/FerryStore/Storage.swift Sources/FerryStore/ReadShape.swift Sources/FerryStore/ContentHash.swift \
                  Sources/FerryStore/SQLite/SQLQueryBuilder.swift; do
        copy=$work/filter/src/$(basename "$file")
        [ -e "$copy" ] && [ "$copy" -nt "$file" ] || sed -E 's/^(public |package )?import (FerryCore|FerryStore)$//' "$file" > "$copy"
      done
      sources="$(core_sources) $(ls "$work"/filter/src/*.swift)"
      extra=(-Xcc "-fmodule-map-file=.build/checkouts/GRDB.swift/Sources/GRDBSQLite/module.modulemap"
             "$debug"/HTTPTypes.build/*.o)
      ;;
    *) echo "fuzz.sh: unknown target $target (json, signature, csv, filter)" >&2; exit 2 ;;
  esac
  with_crypto
  extra+=("${crypto[@]}")
  local newest
  newest=$(ls -t $sources "bench/fuzz/$target.swift" | head -1)
  if [ ! -x "$binary" ] || [ "$newest" -nt "$binary" ]; then
    echo "building $target …" >&2
    # shellcheck disable=SC2086
    swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name FerryCore -package-name Ferry \
      $sources "bench/fuzz/$target.swift" "${extra[@]}" -o "$binary" 2> >(grep -v 'ld.gold: warning: Cannot export local symbol' >&2)
  fi
}

status=0
rows=()
for target in "${targets[@]}"; do
  build "$target"
  corpus=$work/$target/corpus
  mkdir -p "$corpus"
  log=$work/$target/last.log
  set +e
  (cd "$work/$target" && timeout $((SECONDS_PER_TARGET + 60)) "./fuzz-$target" -max_total_time="$SECONDS_PER_TARGET" \
     -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 corpus "$OLDPWD/bench/fuzz/corpus/$target") > "$log" 2>&1
  code=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  size=$(ls "$corpus" | wc -l)
  crashes=$(ls "$work/$target" | grep -c -e '^crash-' -e '^leak-' -e '^timeout-' -e '^oom-' || true)
  if [ "$code" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    echo "== $target: exit $code; the end of $log:" >&2
    tail -30 "$log" >&2
  fi
  rows+=("$(printf '%-10s %8s %12s %10s %8s %8s' "$target" "$SECONDS_PER_TARGET" "${runs:-?}" "${cov:-?}" "$size" "$crashes")")
done

printf '%-10s %8s %12s %10s %8s %8s\n' target seconds runs coverage corpus crashes
printf '%s\n' "${rows[@]}"
exit $status
