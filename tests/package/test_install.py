"""Installs the packages the way an operator would, in a throwaway bookworm
root: bookworm's stock pgbouncer with a working config first, then ours over
it, then the packaged unit driven as systemd would drive it (as its User=,
with a NOTIFY_SOCKET listened on here), PAM, RELOAD, an upgrade to a rebuilt
newer version, remove, purge, and Debian's pgbouncer again.  The steps run
in order on one root: each test is one step of the matrix."""

import hashlib
import time

import psycopg
import pytest

from conftest import NEXT_VERSION, VERSION
from host import INI, USERLIST, Service, install_ours, install_stock, installed, unit
from pgproc import free_port

UNITS = ["pgbouncer.service", "pgbouncer.socket", "pgbouncer-helper-userlist-sync.service",
         "pgbouncer-helper-register.service", "pgbouncer-helper-backup@.service",
         "pgbouncer-helper-backup-full.timer", "pgbouncer-helper-backup-incr.timer"]
PORT = free_port()
state = {}


def config(pg, auth="md5", extra_db=""):
    return (
        "[databases]\n"
        f"app = host=127.0.0.1 port={pg.port} dbname=postgres user=postgres\n" + extra_db +
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {PORT}\n"
        "unix_socket_dir = /var/run/postgresql\n"
        f"auth_type = {auth}\nauth_file = {USERLIST}\nadmin_users = alice\n"
        "logfile = /var/log/postgresql/pgbouncer.log\n"
        "pidfile = /var/run/postgresql/pgbouncer.pid\n"
    )


def snapshot(c):
    out = {}
    for p in (INI, USERLIST):
        st = c.file(p).stat()
        out[p] = (hashlib.sha256(c.file(p).read_bytes()).hexdigest(), st.st_uid, st.st_gid,
                  oct(st.st_mode & 0o7777))
    return out


def connect(dbname="app", user="alice", password="secret"):
    with psycopg.connect(host="127.0.0.1", port=PORT, dbname=dbname, user=user,
                         password=password, connect_timeout=5, autocommit=True) as conn:
        return conn.execute("select 1").fetchone()[0]


def test_stock_pgbouncer_installs_with_a_working_config(chroot, pg):
    install_stock(chroot)
    chroot.file(INI).write_text(config(pg))
    chroot.file(USERLIST).write_text('"alice" "secret"\n')
    state["before"] = snapshot(chroot)
    assert state["before"][USERLIST][1:] == state["before"][INI][1:]  # postgres, 0640


def test_our_package_replaces_stock_without_a_prompt(chroot, debs):
    out = install_ours(chroot, debs, VERSION)
    assert "Configuration file" not in out, out
    assert installed(chroot, "pgbouncer-consul").startswith("install ok installed")
    assert not installed(chroot, "pgbouncer").startswith("install ok installed")
    assert snapshot(chroot) == state["before"], "our install changed the operator's config or userlist"


def test_binary_is_the_fork_built_as_debian_builds_it(chroot):
    v = chroot.run("/usr/sbin/pgbouncer", "--version").stdout
    assert "pgbouncer-consul" in v and "1.24.1" in v, v
    ldd = chroot.run("ldd", "/usr/sbin/pgbouncer").stdout
    for lib in ("libsystemd.so", "libpam.so", "libcares.so"):
        assert lib in ldd, f"{lib} not linked:\n{ldd}"
    assert chroot.file("/usr/lib/pgbouncer-consul/consul_redirect.so").exists()
    assert "userlist-sync" in chroot.run("pgbouncer-helper", "--help").stdout
    for page in ("man1/pgbouncer.1.gz", "man5/pgbouncer.5.gz", "man5/consul_redirect.5.gz",
                 "man1/pgbouncer-helper.1.gz"):
        assert chroot.file(f"/usr/share/man/{page}").exists(), page
    assert "plugins" in chroot.run("sh", "-c", "zcat /usr/share/man/man5/pgbouncer.5.gz").stdout
    assert chroot.file("/etc/pgbouncer-consul/helper.ini").exists()


def test_every_shipped_unit_verifies(chroot):
    paths = [f"/lib/systemd/system/{u}" for u in UNITS]
    r = chroot.run("systemd-analyze", "verify", "--man=no", *paths, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout
    u = unit(chroot, "pgbouncer.service")
    assert u["Type"] == "notify" and u["User"] == "postgres"
    assert u["ExecReload"] == "/bin/kill -HUP $MAINPID" and u["KillSignal"] == "SIGINT"
    # enabled as Debian's (the symlink deb-systemd-helper makes), the socket not
    wants = chroot.file("/etc/systemd/system/multi-user.target.wants")
    assert (wants / "pgbouncer.service").is_symlink()
    assert not (chroot.file("/etc/systemd/system/sockets.target.wants") / "pgbouncer.socket").exists()


def test_unit_starts_notifies_ready_serves_and_reloads(chroot, pg):
    s = Service(chroot)
    try:
        assert s.wait_for("READY=1"), f"no READY=1 (got {s.messages}); log:\n{s.log()}"
        assert connect() == 1
        # RELOAD by the unit's ExecReload: a database added to the file appears
        chroot.file(INI).write_text(config(pg, extra_db=f"app2 = host=127.0.0.1 port={pg.port} dbname=postgres user=postgres\n"))
        s.reload()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert connect("app2") == 1
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert s.proc.poll() is None
    finally:
        rc = s.stop()
    assert rc == 0, s.log()
    chroot.file(INI).write_text(config(pg))


PAM_CHECK = """#!/bin/sh
# pam_exec expose_authtok: the password on stdin
pw=$(tr -d '\\000')
[ "$PAM_USER" = carol ] && [ "$pw" = pam-secret ]
"""


def test_auth_type_pam_authenticates_through_a_pam_service(chroot, pg):
    chroot.file("/usr/local/sbin/pgbc-pam-check").write_text(PAM_CHECK)
    chroot.file("/usr/local/sbin/pgbc-pam-check").chmod(0o755)
    chroot.file("/etc/pam.d/pgbouncer").write_text(
        "auth required pam_exec.so expose_authtok quiet /usr/local/sbin/pgbc-pam-check\n"
        "account required pam_permit.so\n")
    chroot.file(INI).write_text(config(pg, auth="pam"))
    s = Service(chroot)
    try:
        assert s.wait_for("READY=1"), f"no READY=1; log:\n{s.log()}"
        assert connect(user="carol", password="pam-secret") == 1
        with pytest.raises(psycopg.OperationalError):
            connect(user="carol", password="wrong")
    finally:
        s.stop()
    chroot.file(INI).write_text(config(pg))
    (chroot.file("/etc/pam.d/pgbouncer")).unlink()
    state["before"] = snapshot(chroot)


def test_upgrade_to_a_rebuilt_newer_version_keeps_config(chroot, debs_next):
    out = install_ours(chroot, debs_next, NEXT_VERSION)
    assert "Configuration file" not in out, out
    assert installed(chroot, "pgbouncer-consul") == f"install ok installed {NEXT_VERSION}"
    assert snapshot(chroot) == state["before"]


def test_remove_keeps_config(chroot):
    chroot.apt("remove", "pgbouncer-consul", "pgbouncer-helper")
    assert not chroot.file("/usr/sbin/pgbouncer").exists()
    assert snapshot(chroot) == state["before"]
    assert chroot.file("/etc/pgbouncer-consul/helper.ini").exists()


def test_purge_removes_config(chroot):
    chroot.apt("purge", "pgbouncer-consul", "pgbouncer-helper")
    for p in (INI, USERLIST, "/etc/pgbouncer-consul/helper.ini", "/etc/default/pgbouncer"):
        assert not chroot.file(p).exists(), f"{p} left after purge"
    assert installed(chroot, "pgbouncer-consul") == ""


def test_stock_pgbouncer_installs_again(chroot):
    chroot.apt("install", "pgbouncer")
    assert "1.18" in chroot.run("pgbouncer", "--version").stdout
    assert chroot.file(INI).exists()
