"""Our man pages are built from doc/*.md, the one source the README links
to; these checks keep them in step with what the code accepts: every
subcommand and option pgbouncer-helper --help names, and every [consul]
and [databases] key the plugin claims."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "helper/pgbouncer-helper"
HELPER_MD = (ROOT / "doc/pgbouncer-helper.1.md").read_text().replace("\\-", "-")
PLUGIN_MD = (ROOT / "doc/consul_redirect.5.md").read_text()


def helper_help(*args):
    r = subprocess.run([str(HELPER), *args, "--help"], stdout=subprocess.PIPE, text=True)
    assert r.returncode == 0
    return r.stdout


def subcommands():
    out = helper_help()
    block = out.split("subcommands:\n", 1)[1].split("\n\n", 1)[0]
    return [l.strip() for l in block.splitlines() if l.strip()]


def test_man_page_names_every_subcommand_and_option():
    subs = subcommands()
    assert "userlist-sync" in subs and len(subs) >= 9
    missing = []
    for s in subs:
        if f"**{s}**" not in HELPER_MD:
            missing.append(s)
        for opt in set(re.findall(r"--[a-z][a-z-]+", helper_help(s).split("\n", 1)[0])):
            if opt not in HELPER_MD:
                missing.append(f"{s} {opt}")
    for opt in set(re.findall(r"--[a-z][a-z-]+", helper_help())):
        if opt not in HELPER_MD and opt != "--help":
            missing.append(opt)
    assert not missing, f"doc/pgbouncer-helper.1.md lacks: {missing}"


def test_man_page_names_every_exit_code():
    codes = re.findall(r"#define HELPER_EXIT_\w+ (\d+)", (ROOT / "helper/commands.h").read_text())
    section = HELPER_MD.split("# EXIT STATUS", 1)[1].split("# FILES", 1)[0]
    for c in codes:
        assert f"**{c}**" in section, c


def test_plugin_man_page_names_every_key():
    # the [consul] keys are checked in lib/plugin_settings.c (its "known:"
    # list), the database keys the plugin claims are listed in the plugin
    known = re.search(r'known: ([a-z_, "\n\t]+)\)',
                      (ROOT / "lib/plugin_settings.c").read_text()).group(1)
    keys = re.findall(r"[a-z_]+", known.replace('"', " "))
    db_keys = re.findall(r'"(patroni_[a-z_]+)"', (ROOT / "plugin/consul_redirect.c").read_text())
    assert "url" in keys and "patroni_scope" in db_keys
    for k in keys:
        assert f"\n**{k}**\n" in PLUGIN_MD, k
    for k in set(db_keys):
        assert f"**{k}=**" in PLUGIN_MD, k
    # every state SHOW CONSUL can show: the target states, and Consul failing
    states = re.findall(r'\[WATCH_TARGET_[A-Z_]+\] = "([a-z_]+)"',
                        (ROOT / "plugin/watch_target.c").read_text())
    states += re.findall(r'"(consul_unreachable)"', (ROOT / "plugin/watch_show.c").read_text())
    assert len(states) == 10, states
    for state in states:
        assert f"**{state}**" in PLUGIN_MD, state
