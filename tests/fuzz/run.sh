#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for a
# bounded time from its seed corpus; a crash or sanitizer report fails.
# Usage: run.sh OUT_DIR [SECONDS_PER_TARGET]
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: run.sh OUT_DIR [SECONDS]}
secs=${2:-30}
mkdir -p "$out"
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$src/lib $(pkg-config --cflags json-c)"
libs=$(pkg-config --libs json-c)
status=0
for target in fuzz_patroni_member fuzz_consul_kv fuzz_patroni_view; do
	case $target in
	fuzz_patroni_member) deps="lib/patroni_member.c lib/json_strict.c lib/errbuf.c" ;;
	fuzz_consul_kv) deps="lib/consul_kv.c lib/json_strict.c lib/errbuf.c" ;;
	fuzz_patroni_view) deps="lib/patroni_view.c lib/patroni_targets.c lib/patroni_member.c lib/consul_kv.c lib/json_strict.c lib/errbuf.c" ;;
	esac
	(cd "$src" && clang $flags -o "$out/$target" "tests/fuzz/$target.c" $deps $libs)
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
