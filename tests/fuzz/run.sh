#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for a
# bounded time from its seed corpus; a crash or sanitizer report fails.
# Usage: run.sh OUT_DIR [SECONDS_PER_TARGET]
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: run.sh OUT_DIR [SECONDS]}
secs=${2:-20}
mkdir -p "$out"
. "$src/tests/fuzz/build.sh"
status=0
for target in $FUZZ_TARGETS; do
	fuzz_build "$out" "$target"
	mkdir -p "$out/$target.corpus"
	if "$out/$target" "$out/$target.corpus" "$src/tests/fuzz/corpus/$target" \
		-max_total_time="$secs" -print_final_stats=1 >"$out/$target.log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$target.log")
		echo "fuzz: $target: ${runs:-?} runs in ${secs} s, no crash"
	else
		echo "fuzz: $target FAILED, see $out/$target.log"
		tail -n 30 "$out/$target.log"
		status=1
	fi
done
exit $status
