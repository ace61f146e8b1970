# Shared by tests/fuzz/run.sh and bench/fuzz (sourced, POSIX sh): the
# libFuzzer targets, what each links, and fuzz_build to compile one with
# clang, ASan and UBSan.  Needs $src (the source tree) set.

FUZZ_TARGETS="fuzz_patroni_member fuzz_consul_kv fuzz_patroni_view fuzz_patroni_targets
fuzz_plugin_ini fuzz_helper_config fuzz_small_parsers"

# the sources target $1 links besides itself
fuzz_deps() {
	json="lib/json_strict.c lib/errbuf.c"
	view="lib/patroni_view.c lib/patroni_targets.c lib/patroni_member.c lib/consul_kv.c $json"
	client="lib/consul_client.c lib/consul_proxy.c lib/duration.c"
	case $1 in
	fuzz_patroni_member) echo "lib/patroni_member.c $json" ;;
	fuzz_consul_kv) echo "lib/consul_kv.c $json" ;;
	fuzz_patroni_view | fuzz_patroni_targets) echo "$view" ;;
	fuzz_plugin_ini) echo "lib/plugin_settings.c $client $view" ;;
	fuzz_helper_config) echo "helper/helper_config.c helper/log.c helper/secret.c helper/pg_version.c $client $view" ;;
	fuzz_small_parsers) echo "$client $view" ;;
	*) echo "fuzz_deps: unknown target $1" >&2; return 1 ;;
	esac
}

# fuzz_build OUT_DIR TARGET: OUT_DIR/TARGET, built from tests/fuzz/TARGET.c
fuzz_build() {
	deps=$(fuzz_deps "$2") || return 1
	(cd "$src" && clang -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -Ilib -Ihelper \
		$(pkg-config --cflags json-c libcurl) \
		-o "$1/$2" "tests/fuzz/$2.c" $deps $(pkg-config --libs json-c libcurl))
}
