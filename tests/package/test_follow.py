"""From a fresh bookworm root to an installed fork following a Patroni
cluster, by the README: Debian's pgbouncer, then our packages over it (the
shared install steps of host.py), psql, then the README's lines added to
Debian's own /etc/pgbouncer/pgbouncer.ini and the packaged unit's ExecStart
run as its User=, in front of a real Consul 1.8.7 agent and a real 3-member
Patroni 3.0.2 cluster started on the host (tests/integration/lab.py; the
root shares the host's network namespace).  SHOW CONSUL by the README's psql
command, and one client's writes, follow the leader across one switchover.

The README's block and commands are read from README.md, so they are what
runs here.  What differs is the lab's, not the operator's: the agent's URL
and listen_port (free ports on a shared machine), the cluster's database
and the client's user in userlist.txt."""

import os
import re
import shlex
import shutil
import sys
import time

import psycopg
import pytest

from conftest import ROOT, VERSION
from host import INI, README, USERLIST, Service, install_ours, install_stock, installed
from pgproc import free_port

sys.path.insert(0, str(ROOT / "tests/integration"))
import lab  # noqa: E402

PORT = free_port()
README_PORT = "6432"
README_URL = "http://127.0.0.1:8500"
SCOPE = "raddb"
state = {}


def readme_follow():
    """The README's ini block and check command of "Following a Patroni
    cluster": ({section: [lines]}, psql argv)."""
    text = README.read_text()
    part = text[text.index("**Following a Patroni cluster:**"):]
    blocks = re.findall(r"\n\n((?: {4}.*\n)+)", part)
    sections, cur = {}, None
    for line in blocks[0].splitlines():
        line = line.strip()
        if line.startswith("["):
            cur = sections.setdefault(line, [])
        else:
            cur.append(line)
    check = blocks[1].strip()
    assert "SHOW CONSUL" in check, check
    assert "`apt-get install postgresql-client`" in part[:part.index(check)], \
        "README: psql's package is not named before the check"
    return sections, shlex.split(check)


def add_to_sections(ini, sections):
    """What an operator does in an editor: each line goes right under its
    section's header; a section the file lacks is added at its end."""
    lines = ini.splitlines()
    for header, new in sections.items():
        if header in (line.strip() for line in lines):
            at = [line.strip() for line in lines].index(header) + 1
            lines[at:at] = new
        else:
            lines += ["", header, *new]
    return "\n".join(lines) + "\n"


def show_consul(c, argv):
    """The README's psql command run in the root; psql's aligned table as
    {database: row}."""
    r = c.run(*argv)
    out = [line for line in r.stdout.splitlines() if "|" in line]
    cols = [x.strip() for x in out[0].split("|")]
    return {row["database"]: row for row in
            (dict(zip(cols, (x.strip() for x in line.split("|")))) for line in out[1:])}


def wait_row(c, argv, pred, what, timeout=30):
    return lab.wait_until(lambda: (lambda r: r if r and pred(r) else None)(
        show_consul(c, argv).get(SCOPE)), timeout, 0.2, what)


def write(conn):
    """One insert through the fork: (id, the server's port)."""
    return conn.execute("insert into follow default values returning id, inet_server_port()") \
        .fetchone()


def on_member(cluster, name, row_id):
    """The row as the member itself has it (its port), or None."""
    with psycopg.connect(cluster.dsn(name, dbname=SCOPE), autocommit=True) as c:
        r = c.execute("select port from follow where id = %s", (row_id,)).fetchone()
        return r[0] if r else None


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the lab runs Patroni as postgres: run as root")
    dirs = [lab.make_workdir("pgbc-pkg-consul."), lab.make_workdir("pgbc-pkg-patroni.")]
    consul = lab.Consul(dirs[0], binary=lab.consul_binary())
    pc = None
    try:
        consul.start()
        pc = lab.PatroniCluster(dirs[1], consul, scope=SCOPE).start()
        with pc.connect(autocommit=True) as c:
            c.execute(f"create database {SCOPE}")
        yield pc
    finally:
        if pc is not None:
            pc.stop()
        consul.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def service():
    """The unit's process once started; stopped by PID after the module."""
    yield state
    if state.get("conn"):
        state["conn"].close()
    if state.get("service"):
        state["service"].stop()


def test_install_over_stock_then_psql(chroot, debs):
    state["t0"] = time.monotonic()
    install_stock(chroot)
    install_ours(chroot, debs, VERSION)
    assert installed(chroot, "pgbouncer-consul") == f"install ok installed {VERSION}"
    chroot.apt("install", "postgresql-client")  # the README's, offline from the root's cache


def test_readme_config_follows_the_leader(chroot, cluster, service):
    sections, check = readme_follow()
    state["check"] = check = [str(PORT) if a == README_PORT else a for a in check]
    assert f"url = {README_URL}" in sections["[consul]"]
    sections["[consul]"] = [f"url = {cluster.consul.url}" if a == f"url = {README_URL}" else a
                            for a in sections["[consul]"]]
    ini = chroot.file(INI).read_text()  # Debian's, as the install left it
    assert f"\nlisten_port = {README_PORT}\n" in ini
    ini = ini.replace(f"\nlisten_port = {README_PORT}\n", f"\nlisten_port = {PORT}\n")
    chroot.file(INI).write_text(add_to_sections(ini, sections))
    chroot.file(USERLIST).write_text(f'"{lab.PG_USER}" "{lab.PG_PASSWORD}"\n')

    s = state["service"] = Service(chroot)
    assert s.wait_for("READY=1"), f"no READY=1 (got {s.messages}); log:\n{s.log()}"
    leader = cluster.leader()
    row = wait_row(chroot, check, lambda r: r["state"] == "following", "raddb following")
    assert (row["member"], row["role"], row["scope"]) == (leader, "primary", SCOPE), row
    assert int(row["port"]) == cluster.member(leader).port, row

    conn = state["conn"] = psycopg.connect(
        host="127.0.0.1", port=PORT, dbname=SCOPE, user=lab.PG_USER,
        password=lab.PG_PASSWORD, connect_timeout=10, autocommit=True)
    conn.execute("create table follow (id serial primary key, port int default inet_server_port())")
    row_id, port = write(conn)
    assert port == cluster.member(leader).port
    assert on_member(cluster, leader, row_id) == port


def test_switchover_moves_the_entry_and_the_connected_client(chroot, cluster, service):
    conn, check = state["conn"], state["check"]
    res = cluster.switchover()
    new = res["new"]
    row = wait_row(chroot, check, lambda r: r["member"] == new and r["state"] == "following",
                   f"raddb following {new}")
    assert int(row["port"]) == cluster.member(new).port and int(row["switches"]) >= 1, row
    # the same client connection, kept across the switchover
    row_id, port = write(conn)
    assert port == cluster.member(new).port
    assert on_member(cluster, new, row_id) == port
    conn.close()
    assert state["service"].proc.poll() is None, state["service"].log()
    lab.log(f"test_follow: install to switched over in {time.monotonic() - state['t0']:.1f} s "
            f"(switchover {res['old']} -> {new} {res['seconds']:.1f} s)")
