"""pgbouncer-helper against the real lab: a Consul 1.8.7 dev agent, a 3-member
Patroni 3.0.2 or 4.0.7 / PostgreSQL 15 cluster (archiving to pgBackRest), the
PgBouncer fork for logins and RELOAD, and pgBackRest 2.45.

    /usr/bin/python3 -m pytest -v tests/integration/test_helper.py   (as root)

Environment:
    PGBC_PATRONI    3 (bookworm's 3.0.2, default), 4 (trixie's 4.0.7) or 4.1 (sid's
                    4.1.5), see lab.py
    PGBC_HELPER     the pgbouncer-helper binary (default: the build tree's)
    PGBC_PGBOUNCER  the fork's pgbouncer (default: the build tree's)

The module runs its own cluster (built with lab.PatroniCluster on the shared
`consul` fixture) because the backup tests need archive_mode/archive_command set
at bootstrap.  Tests run in file order; each leaves the cluster healthy.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import fork
import lab
from proxy_traps import ByteRecorder, ForwardProxy, proxy_environment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600, method="signal")]

HELPER = os.environ.get("PGBC_HELPER", str(fork.ROOT / "helper/pgbouncer-helper"))
PGBOUNCER = fork.PGBOUNCER
SCOPE = "raddb"
ADMIN_USER = "pgbadmin"
ADMIN_PASSWORD = "admin-pass"

# roles userlist-sync must carry over: name -> (password, password_encryption)
ROLES = {
    'we"ird': ("quote-pass", "md5"),
    "with space": ("space-pass", "scram-sha-256"),
    "ünïcødé_用户": ("uni-pass", "scram-sha-256"),
    "plain_md5": ("md5-pass", "md5"),
    "dropme": ("drop-pass", "md5"),
}


# --------------------------------------------------------------------------- helpers

def cleanup(path: Path, request) -> None:
    """Remove a work dir unless PGBC_KEEP is set or a test of the session failed."""
    if os.environ.get("PGBC_KEEP") or request.session.__dict__.get("_lab_failed"):
        lab.log(f"keeping {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def pg_ids() -> tuple[int, int]:
    pw = pwd.getpwnam(lab.PG_USER)
    return pw.pw_uid, pw.pw_gid


def run_helper(*args: str, ini: Path | None = None, as_postgres: bool = False,
               env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [HELPER] + (["-c", str(ini)] if ini else []) + list(args)
    kw: dict = {}
    if as_postgres:
        uid, gid = pg_ids()
        kw.update(user=uid, group=gid, extra_groups=[], cwd="/tmp")
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env, **kw)
    lab.log(f"helper {' '.join(args)} -> rc={r.returncode}\n{r.stderr.strip()}")
    return r


def write_ini(path: Path, consul: lab.Consul, **helper_keys: str) -> Path:
    keys = {"scope": SCOPE, "exclude_users": "postgres", "sync_interval": "60s",
            "pgbackrest_stanza": "main", "datacenters": "dc1 dc2", "dns_ttl": "7s"}
    keys.update(helper_keys)
    text = f"[consul]\nurl = {consul.url}\nnamespace = service\nwait = 30s\n\n[helper]\n"
    text += "".join(f"{k} = {v}\n" for k, v in keys.items())
    path.write_text(text)
    path.chmod(0o644)
    return path


def parse_userlist(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r'"((?:[^"]|"")*)" "((?:[^"]|"")*)"', line)
        assert m, f"malformed auth_file line: {line!r}"
        out[m.group(1).replace('""', '"')] = m.group(2).replace('""', '"')
    return out


def md5_secret(user: str, password: str) -> str:
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def leader_conn(cluster: lab.PatroniCluster) -> psycopg.Connection:
    return psycopg.connect(cluster.dsn(cluster.wait_for_leader()), autocommit=True)


def create_role(conn: psycopg.Connection, name: str, password: str, enc: str) -> None:
    conn.execute(sql.SQL("SET password_encryption = {}").format(sql.Literal(enc)))
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(password)))


def shadow(cluster: lab.PatroniCluster) -> dict[str, str]:
    with leader_conn(cluster) as c:
        return dict(c.execute("select usename, passwd from pg_shadow "
                              "where passwd is not null").fetchall())


def dig(consul: lab.Consul, name: str, rtype: str = "SRV") -> list[str]:
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(consul.dns_port), name, rtype,
                        "+noall", "+answer", "+time=2", "+tries=1"],
                       capture_output=True, text=True, timeout=10)
    return [ln for ln in r.stdout.splitlines() if ln and not ln.startswith(";")]


def srv_ports(consul: lab.Consul, name: str) -> set[int]:
    # "<name>. <ttl> IN SRV <prio> <weight> <port> <target>"
    return {int(ln.split()[6]) for ln in dig(consul, name, "SRV")}


def wait_cluster_healthy(cluster: lab.PatroniCluster) -> None:
    cluster.wait_healthy(timeout=90)


class Daemon:
    """A helper daemon started by PID, stopped by PID with a bounded wait."""

    def __init__(self, args: list[str], ini: Path, log_path: Path, env: dict | None = None):
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        self.proc = subprocess.Popen([HELPER, "-c", str(ini)] + args, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(env or {})})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                lab.stop_pid(self.proc.pid, timeout=1, proc=self.proc, name="helper")
        self.logf.close()
        return self.proc.returncode


class Bouncer:
    """The PgBouncer fork as postgres, auth_type md5, admin console for RELOAD."""

    def __init__(self, workdir: Path, backend_port: int, auth_file: Path,
                 admin_user: str = ADMIN_USER, admin_password: str = ADMIN_PASSWORD):
        self.admin_user, self.admin_password = admin_user, admin_password
        self.dir = workdir
        self.port = lab.free_port()
        self.auth_file = auth_file
        self.logfile = workdir / "pgbouncer.log"
        self.ini = workdir / "pgbouncer.ini"
        self.ini.write_text(
            "[databases]\n"
            f"raddb = host=127.0.0.1 port={backend_port} dbname=postgres\n\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = md5\nauth_file = {auth_file}\nadmin_users = {admin_user}\n"
            f"logfile = {self.logfile}\npool_mode = session\n")
        lab.chown_tree(workdir)
        uid, gid = pg_ids()
        self.proc = subprocess.Popen([PGBOUNCER, str(self.ini)], user=uid, group=gid,
                                     extra_groups=[], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(workdir))
        lab.wait_until(self._up, 15, 0.1, "pgbouncer listening")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {self.logfile.read_text()[-2000:]}")
        import socket
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def admin_conninfo(self) -> str:
        return (f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.admin_user} "
                f"password={self.admin_password} connect_timeout=5")

    def reloads(self) -> int:
        return self.logfile.read_text(errors="replace").count("RELOAD command issued")

    def stop(self) -> None:
        lab.stop_pid(self.proc.pid, timeout=10, proc=self.proc, name="pgbouncer")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for path in (HELPER, PGBOUNCER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} missing: build pgbouncer-helper / the fork first")


@pytest.fixture(scope="module")
def pgbr(consul, request):
    """pgBackRest config + repo dir (owned by postgres) the cluster archives to."""
    wd = lab.make_workdir("pgbc-helper-pgbr-")
    conf = wd / "pgbackrest.conf"
    conf.write_text(f"[global]\nrepo1-path={wd}/repo\nlog-path={wd}/log\nlock-path={wd}/lock\n"
                    "start-fast=y\narchive-timeout=30\nlog-level-console=info\n"
                    "log-level-file=off\n\n[main]\npg1-user=postgres\n")
    for d in ("log", "lock"):
        (wd / d).mkdir()
    hook_ini = write_ini(wd / "hook.ini", consul)
    lab.chown_tree(wd)
    yield {"dir": wd, "conf": conf, "repo": wd / "repo", "hook_ini": hook_ini,
           "hooks_on": wd / "hooks-on"}
    cleanup(wd, request)


class HookedCluster(lab.PatroniCluster):
    """The lab cluster with Patroni's on_role_change callback pointing at a per-member
    wrapper that runs `pgbouncer-helper backup-hook` with that member's pgBackRest
    settings, but only while the file pgbr["hooks_on"] exists."""

    def __init__(self, workdir, consul, pgbr: dict, **kw):
        self.pgbr = pgbr
        super().__init__(workdir, consul, **kw)

    def config_for(self, m: lab.Member) -> dict:
        cfg = super().config_for(m)
        script = m.dir / "backup-hook.sh"
        script.write_text(
            "#!/bin/sh\n"
            f'[ -e {self.pgbr["hooks_on"]} ] || exit 0\n'
            f'export PGBACKREST_CONFIG={self.pgbr["conf"]} PGBACKREST_PG1_PATH={m.data_dir} '
            f"PGBACKREST_PG1_PORT={m.port} PGBACKREST_PG1_SOCKET_PATH={m.socket_dir}\n"
            f'exec {HELPER} -c {self.pgbr["hook_ini"]} backup-hook "$@" '
            f'>> {self.pgbr["dir"]}/hook-{m.name}.log 2>&1\n')
        script.chmod(0o755)
        cfg["postgresql"]["callbacks"] = {"on_role_change": str(script)}
        return cfg


@pytest.fixture(scope="module")
def cluster(consul, pgbr, request):
    wd = lab.make_workdir("pgbc-helper-patroni-")
    # archive_command runs in the data directory: $PWD gives pgBackRest its pg1-path
    params = {"archive_mode": "on",
              "archive_command": f'pgbackrest --config={pgbr["conf"]} --stanza=main '
                                 f'--pg1-path="$PWD" archive-push %p'}
    c = HookedCluster(wd, consul, pgbr, scope=SCOPE, pg_parameters=params)
    try:
        c.start()
        with leader_conn(c) as conn:
            create_role(conn, ADMIN_USER, ADMIN_PASSWORD, "md5")
            for name, (pw, enc) in ROLES.items():
                create_role(conn, name, pw, enc)
        yield c
    finally:
        c.stop()
        cleanup(wd, request)


@pytest.fixture(scope="module")
def bouncer(cluster, request):
    """PgBouncer whose auth_file starts with only the admin user (seeded by hand,
    the same md5 secret Postgres holds), owned by postgres, mode 0600."""
    wd = lab.make_workdir("pgbc-helper-bouncer-")
    auth = wd / "userlist.txt"
    auth.write_text(f'"{ADMIN_USER}" "{md5_secret(ADMIN_USER, ADMIN_PASSWORD)}"\n')
    auth.chmod(0o600)
    # a fixed backend member: logins work on replicas too, and switchovers elsewhere in
    # this module do not move it
    b = Bouncer(wd, cluster.member(cluster.names[0]).port, auth)
    yield b
    b.stop()
    cleanup(wd, request)


@pytest.fixture
def sync_ini(tmp_path, consul, bouncer):
    return write_ini(tmp_path / "helper.ini", consul, auth_file=str(bouncer.auth_file),
                     pgbouncer_admin=bouncer.admin_conninfo,
                     source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")


# --------------------------------------------------------------------------- config / usage

def test_help_for_every_subcommand(tmp_path):
    for sub in ("userlist-sync", "prepared-queries", "register", "maintenance", "topology",
                "backup", "backup-hook"):
        r = run_helper(sub, "--help", ini=tmp_path / "absent.ini")
        assert r.returncode == 0 and f"pgbouncer-helper [-c FILE] {sub}" in r.stdout
    assert run_helper("--help").returncode == 0


def test_version_prints_configure_version():
    m = re.search(r"AC_INIT\(\[pgbouncer-consul\], \[([^]]+)\]",
                  (fork.ROOT / "configure.ac").read_text())
    r = run_helper("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"pgbouncer-helper {m.group(1)}\n"


def test_missing_ini_is_refused(tmp_path):
    r = run_helper("topology", ini=tmp_path / "absent.ini")
    assert r.returncode == 2
    assert f"{tmp_path}/absent.ini: cannot open" in r.stderr


def test_unknown_key_refused_with_file_line_key(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul, colour="blue")
    r = run_helper("topology", ini=ini)
    assert r.returncode == 2
    assert re.search(rf"{ini}:\d+: colour: unknown key in \[helper\]", r.stderr), r.stderr


def test_bad_value_refused_with_file_line_key(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul, sync_interval="soon")
    r = run_helper("userlist-sync", "--once", ini=ini)
    assert r.returncode == 2 and re.search(rf"{ini}:\d+: sync_interval: ", r.stderr)


def test_unknown_subcommand_and_bad_option(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    r = run_helper("frobnicate", ini=ini)
    assert r.returncode == 2 and 'unknown subcommand "frobnicate"' in r.stderr
    r = run_helper("userlist-sync", "--bogus", ini=ini)
    assert r.returncode == 2 and "--bogus" in r.stderr
    r = run_helper("backup", "--type", "weekly", ini=ini)
    assert r.returncode == 2 and '"weekly" is not full, diff or incr' in r.stderr


def test_command_line_overrides_file(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul, patroni_url="http://127.0.0.1:1")
    port = lab.free_port()
    r = run_helper("topology", f"--patroni-url=http://127.0.0.1:{port}", ini=ini)
    assert r.returncode == 1
    assert f"http://127.0.0.1:{port}/cluster" in r.stderr and ":1/" not in r.stderr


# --------------------------------------------------------------------------- userlist-sync

def test_userlist_sync_writes_every_role(cluster, bouncer, sync_ini):
    before = bouncer.reloads()
    r = run_helper("userlist-sync", "--once", ini=sync_ini)
    assert r.returncode == 0, r.stderr
    assert "wrote auth_file" in r.stderr
    st = bouncer.auth_file.stat()
    assert st.st_mode & 0o777 == 0o600
    assert (st.st_uid, st.st_gid) == pg_ids(), "owner of the old file not kept"
    text = bouncer.auth_file.read_text()
    users = parse_userlist(text)
    expected = {u: p for u, p in shadow(cluster).items() if u != "postgres"}
    assert users == expected
    assert "postgres" not in users                               # exclude_users
    assert users['we"ird'] == md5_secret('we"ird', "quote-pass")
    assert '"we""ird" "md5' in text                              # quote doubled
    assert users["with space"].startswith("SCRAM-SHA-256$4096:")
    assert users["ünïcødé_用户"].startswith("SCRAM-SHA-256$")
    lab.wait_until(lambda: bouncer.reloads() == before + 1, 5, 0.1, "RELOAD in pgbouncer log")
    assert not list(bouncer.auth_file.parent.glob("userlist.txt.tmp.*"))


def test_userlist_sync_unchanged_does_not_reload(bouncer, sync_ini):
    assert run_helper("userlist-sync", "--once", ini=sync_ini).returncode == 0
    before_stat = bouncer.auth_file.stat()
    before = bouncer.reloads()
    r = run_helper("userlist-sync", "--once", ini=sync_ini)
    assert r.returncode == 0 and "unchanged" in r.stderr and "RELOAD" not in r.stderr
    # a RELOAD is answered after PgBouncer logged it, and the helper waits
    # for the answer before it exits: nothing to wait for here
    assert bouncer.reloads() == before
    after = bouncer.auth_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before_stat.st_ino, before_stat.st_mtime_ns)


def test_client_logs_in_through_pgbouncer_with_synced_users(bouncer, sync_ini):
    # the helper exits after PgBouncer answered its RELOAD (if the file
    # changed at all), and PgBouncer answers once it has re-read auth_file
    assert run_helper("userlist-sync", "--once", ini=sync_ini).returncode == 0
    for user in ('we"ird', "ünïcødé_用户", "with space", "plain_md5"):
        pw = ROLES[user][0]
        with psycopg.connect(host="127.0.0.1", port=bouncer.port, dbname="raddb", user=user,
                             password=pw, connect_timeout=5) as c:
            assert c.execute("select current_user").fetchone()[0] == user
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=bouncer.port, dbname="raddb",
                        user="plain_md5", password="wrong", connect_timeout=5)


def test_userlist_sync_role_added_and_dropped(cluster, bouncer, sync_ini):
    assert run_helper("userlist-sync", "--once", ini=sync_ini).returncode == 0
    with leader_conn(cluster) as c:
        create_role(c, "newcomer", "new-pass", "scram-sha-256")
        c.execute("DROP ROLE dropme")
    before = bouncer.reloads()
    r = run_helper("userlist-sync", "--once", ini=sync_ini)
    assert r.returncode == 0
    users = parse_userlist(bouncer.auth_file.read_text())
    assert "newcomer" in users and "dropme" not in users
    lab.wait_until(lambda: bouncer.reloads() == before + 1, 5, 0.1, "RELOAD")
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, dbname="raddb", user="newcomer",
                         password="new-pass", connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def test_userlist_sync_failures_leave_file_intact(tmp_path, consul, cluster, bouncer,
                                                  sync_ini):
    assert run_helper("userlist-sync", "--once", ini=sync_ini).returncode == 0
    before = bouncer.auth_file.read_bytes()
    before_stat = bouncer.auth_file.stat()
    cases = {
        "consul unreachable": (["--consul-url", f"http://127.0.0.1:{lab.free_port()}"],
                               "Couldn't connect"),
        "source refused": (["--source", "user=nosuchrole dbname=postgres"],
                           "cannot connect to leader"),
        "no such scope": (["--scope", "nosuchscope"], "no leader for scope nosuchscope"),
    }
    for what, (args, msg) in cases.items():
        r = run_helper("userlist-sync", "--once", *args, ini=sync_ini)
        assert r.returncode == 1, what
        assert msg in r.stderr, (what, r.stderr)
        assert len([ln for ln in r.stderr.splitlines() if "ERROR" in ln]) == 1
        assert bouncer.auth_file.read_bytes() == before, what
        assert bouncer.auth_file.stat().st_ino == before_stat.st_ino, what
    assert not list(bouncer.auth_file.parent.glob("userlist.txt.tmp.*"))


def drop_role(cluster: lab.PatroniCluster, name: str) -> None:
    with leader_conn(cluster) as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_userlist_sync_keeps_extra_users_and_reload_logs_in_as_one(consul, cluster,
                                                                    request):
    """The pooler's admin user is no PostgreSQL role: kept from extra_users_file, it
    survives every sync, so the next RELOAD (logging in as it) still works."""
    wd = lab.make_workdir("pgbc-helper-extra-")
    request.addfinalizer(lambda: cleanup(wd, request))
    admin, admin_pw = "pgbouncer_admin", "pooler-only-pass"
    line = f'"{admin}" "{md5_secret(admin, admin_pw)}"'
    extra = wd / "extra_users.txt"
    extra.write_text(f"; the pooler's own users\n{line}\n\n"
                     f'"plain_md5" "{md5_secret("plain_md5", "override-pass")}"\n')
    auth = wd / "userlist.txt"
    auth.write_text(line + "\n")
    auth.chmod(0o600)
    b = Bouncer(wd, cluster.member(cluster.names[0]).port, auth, admin_user=admin,
                admin_password=admin_pw)
    request.addfinalizer(b.stop)
    ini = write_ini(wd / "h.ini", consul, auth_file=str(auth), extra_users_file=str(extra),
                    pgbouncer_admin=b.admin_conninfo,
                    source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")
    for round_ in range(2):
        before = b.reloads()
        if round_:
            with leader_conn(cluster) as c:
                create_role(c, "extra_round", "x-pass", "md5")
            request.addfinalizer(lambda: drop_role(cluster, "extra_round"))
        r = run_helper("userlist-sync", "--once", ini=ini)
        assert r.returncode == 0, r.stderr
        text = auth.read_text()
        assert text.splitlines()[0] == line  # verbatim, before the pg_shadow users
        users = parse_userlist(text)
        assert "plain_md5" in users and "pgbadmin" in users
        # the extra file wins over pg_shadow for a user in both
        assert users["plain_md5"] == md5_secret("plain_md5", "override-pass")
        assert list(users).count("plain_md5") == 1
        assert "2 from extra_users_file" in r.stderr
        lab.wait_until(lambda: b.reloads() == before + 1, 5, 0.1, "RELOAD as the extra user")
    with psycopg.connect(b.admin_conninfo, autocommit=True) as c:
        c.execute("RELOAD")


def test_userlist_sync_bad_extra_users_file_leaves_file_intact(tmp_path, consul, cluster,
                                                                bouncer, sync_ini):
    assert run_helper("userlist-sync", "--once", ini=sync_ini).returncode == 0
    before = bouncer.auth_file.read_bytes()
    bad = tmp_path / "extra.txt"
    bad.write_text('"ok" "md5x"\npgbouncer md5abc\n')
    cases = {
        "missing": (str(tmp_path / "nosuch.txt"), "cannot open"),
        "malformed": (str(bad), f'{bad}:2: expected "user" "secret"'),
    }
    for what, (path, msg) in cases.items():
        r = run_helper("userlist-sync", "--once", "--extra-users-file", path, ini=sync_ini)
        assert r.returncode == 1, what
        assert msg in r.stderr, (what, r.stderr)
        assert bouncer.auth_file.read_bytes() == before, what


def test_userlist_sync_pgbouncer_unreachable_fails(tmp_path, consul, cluster, bouncer):
    auth = tmp_path / "userlist.txt"
    ini = write_ini(tmp_path / "h.ini", consul, auth_file=str(auth),
                    pgbouncer_admin=f"host=127.0.0.1 port={lab.free_port()} dbname=pgbouncer "
                                    "user=x connect_timeout=2",
                    source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")
    r = run_helper("userlist-sync", "--once", ini=ini)
    assert r.returncode == 1 and "pgbouncer admin console" in r.stderr
    assert "plain_md5" in parse_userlist(auth.read_text())


def test_userlist_sync_keeps_owner_group_and_mode(consul, cluster, bouncer, request):
    """PgBouncer reads the auth_file as another user, through its group: the
    replacement keeps owner, group and mode 0640 (it used to become 0600)."""
    wd = lab.make_workdir("pgbc-helper-auth-")
    request.addfinalizer(lambda: cleanup(wd, request))
    auth = wd / "userlist.txt"
    auth.write_text('"nobody_yet" "x"\n')
    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    os.chown(auth, nobody, nogroup)
    auth.chmod(0o640)
    ini = write_ini(wd / "h.ini", consul, auth_file=str(auth),
                    pgbouncer_admin=bouncer.admin_conninfo,
                    source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")
    r = run_helper("userlist-sync", "--once", ini=ini)
    assert r.returncode == 0, r.stderr
    st = auth.stat()
    assert "plain_md5" in parse_userlist(auth.read_text())
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (nobody, nogroup, 0o640)


def test_userlist_sync_fails_when_owner_cannot_be_kept(consul, cluster, bouncer, request):
    """Run as postgres: an auth_file owned by root cannot keep its owner, and a
    directory postgres cannot write cannot take the temp file.  Both fail, name
    what was wrong, and leave the old file as it was."""
    wd = lab.make_workdir("pgbc-helper-auth-")          # owned by postgres
    request.addfinalizer(lambda: cleanup(wd, request))
    source = f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres"
    auth = wd / "userlist.txt"
    auth.write_text('"old" "file"\n')
    os.chown(auth, 0, 0)
    auth.chmod(0o644)
    ini = write_ini(wd / "h.ini", consul, auth_file=str(auth), source=source,
                    pgbouncer_admin=bouncer.admin_conninfo)
    r = run_helper("userlist-sync", "--once", ini=ini, as_postgres=True)
    assert r.returncode == 1, r.stderr
    assert f"cannot keep owner 0:0 of {auth}" in r.stderr
    st = auth.stat()
    assert auth.read_text() == '"old" "file"\n'
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    assert not list(wd.glob("userlist.txt.tmp.*"))
    # the directory: root's, the file postgres's
    ro = wd / "ro"
    ro.mkdir()
    os.chown(ro, 0, 0)
    ro.chmod(0o755)
    auth2 = ro / "userlist.txt"
    auth2.write_text('"old" "file"\n')
    uid, gid = pg_ids()
    os.chown(auth2, uid, gid)
    ini2 = write_ini(wd / "h2.ini", consul, auth_file=str(auth2), source=source,
                     pgbouncer_admin=bouncer.admin_conninfo)
    r = run_helper("userlist-sync", "--once", ini=ini2, as_postgres=True)
    assert r.returncode == 1
    assert f"its directory {ro} is not writable for uid {uid}" in r.stderr
    assert auth2.read_text() == '"old" "file"\n'


def test_userlist_sync_daemon_follows_leader_change(tmp_path, consul, cluster, bouncer,
                                                    sync_ini):
    ini = write_ini(tmp_path / "d.ini", consul, auth_file=str(bouncer.auth_file),
                    pgbouncer_admin=bouncer.admin_conninfo, sync_interval="1h",
                    source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")
    d = Daemon(["userlist-sync"], ini, tmp_path / "daemon.log")
    try:
        lab.wait_until(lambda: "auth_file" in d.log(), 15, 0.2, "first sync")
        with leader_conn(cluster) as c:
            create_role(c, "after_switch", "as-pass", "md5")
        time.sleep(2)
        assert "after_switch" not in parse_userlist(bouncer.auth_file.read_text())
        sw = cluster.switchover()
        lab.wait_until(lambda: "after_switch" in parse_userlist(bouncer.auth_file.read_text()),
                       30, 0.2, "sync after leader change")
        assert f"leader of scope {SCOPE} changed" in d.log()
        assert f"from leader {sw['new']}" in d.log()
    finally:
        rc = d.stop()         # SIGTERM, a bounded wait, then SIGKILL (rc -9)
        lab.log(d.log())
    assert rc == 0
    assert "stopping on signal" in d.log()
    wait_cluster_healthy(cluster)


def test_userlist_sync_daemon_interval(tmp_path, consul, cluster, bouncer):
    auth = tmp_path / "userlist.txt"
    ini = write_ini(tmp_path / "d.ini", consul, auth_file=str(auth), sync_interval="1s",
                    source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")
    d = Daemon(["userlist-sync"], ini, tmp_path / "daemon.log")
    try:
        lab.wait_until(auth.exists, 15, 0.2, "first sync")
        with leader_conn(cluster) as c:
            create_role(c, "by_interval", "bi-pass", "md5")
        lab.wait_until(lambda: "by_interval" in parse_userlist(auth.read_text()), 15, 0.2,
                       "sync on interval")
    finally:
        assert d.stop() == 0


def test_userlist_sync_10000_roles_timing(tmp_path, consul, cluster):
    auth = tmp_path / "userlist.txt"
    ini = write_ini(tmp_path / "h.ini", consul, auth_file=str(auth),
                    source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")
    scram = shadow(cluster)["with space"]
    with leader_conn(cluster) as c:
        # pre-hashed secrets: CREATE ROLE keeps them as given (fast to create)
        c.execute("DO $$ BEGIN FOR i IN 1..10000 LOOP "
                  "EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', 'bulk_' || i, "
                  "CASE WHEN i % 2 = 0 THEN 'md5' || md5('pw' || i || 'bulk_' || i) "
                  f"ELSE {sql.Literal(scram).as_string(c)} END); END LOOP; END $$")
    try:
        t0 = time.monotonic()
        r = run_helper("userlist-sync", "--once", ini=ini)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        users = parse_userlist(auth.read_text())
        assert sum(1 for u in users if u.startswith("bulk_")) == 10000
        assert users["bulk_2"] == "md5" + hashlib.md5(b"pw2bulk_2").hexdigest()
        lab.record_timing("helper_userlist_sync_10000_roles", elapsed)
        t0 = time.monotonic()
        r = run_helper("userlist-sync", "--once", ini=ini)
        lab.record_timing("helper_userlist_sync_10000_roles_unchanged", time.monotonic() - t0)
        assert "unchanged" in r.stderr
        # the time is recorded above; speed is bench/'s to judge
    finally:
        with leader_conn(cluster) as c:
            # one lock per dropped role: commit in batches (max_locks_per_transaction)
            c.execute("DO $$ BEGIN FOR i IN 1..10000 LOOP "
                      "EXECUTE format('DROP ROLE IF EXISTS %I', 'bulk_' || i); "
                      "IF i % 500 = 0 THEN COMMIT; END IF; END LOOP; END $$")


# --------------------------------------------------------------------------- prepared queries

def test_prepared_queries_created_and_idempotent(tmp_path, consul, cluster):
    ini = write_ini(tmp_path / "h.ini", consul)
    r = run_helper("prepared-queries", ini=ini)
    assert r.returncode == 0
    queries = {q["Name"]: q for q in consul.api("GET", "/v1/query")}
    for name, tag in ((f"{SCOPE}-writer", "primary"), (f"{SCOPE}-query", "replica"),
                      (f"{SCOPE}-any", "any")):
        q = queries[name]
        assert q["Service"]["Service"] == SCOPE
        assert q["Service"]["Tags"] == [tag]
        assert q["Service"]["OnlyPassing"] is True
        assert q["Service"]["Near"] == "_agent"
        assert q["Service"]["Failover"] == {"NearestN": 3, "Datacenters": ["dc1", "dc2"]}
        assert q["DNS"]["TTL"] == "7s"
    indexes = {n: q["ModifyIndex"] for n, q in queries.items()}
    r = run_helper("prepared-queries", ini=ini)
    assert r.returncode == 0 and "nothing changed" in r.stderr
    assert {q["Name"]: q["ModifyIndex"] for q in consul.api("GET", "/v1/query")} == indexes
    # a changed setting updates in place (same IDs), never duplicates
    r = run_helper("prepared-queries", "--dns-ttl", "9s", ini=ini)
    assert r.returncode == 0 and r.stderr.count("updated") == 3
    after = consul.api("GET", "/v1/query")
    assert len([q for q in after if q["Name"].startswith(SCOPE + "-")]) == 3
    assert {q["Name"]: q["ID"] for q in after} == {n: q["ID"] for n, q in queries.items()}
    assert all(q["DNS"]["TTL"] == "9s" for q in after)
    assert run_helper("prepared-queries", ini=ini).returncode == 0


def test_prepared_query_dns_follows_switchover(tmp_path, consul, cluster):
    ini = write_ini(tmp_path / "h.ini", consul)
    assert run_helper("prepared-queries", ini=ini).returncode == 0
    name = f"{SCOPE}-writer.query.consul"
    leader = cluster.wait_for_leader()
    port = cluster.member(leader).port
    lab.wait_until(lambda: srv_ports(consul, name) == {port}, 30, 0.5, "writer SRV = leader")
    answer = dig(consul, name, "A")
    assert answer and answer[0].split()[1] == "7" and answer[0].split()[4] == "127.0.0.1"
    replicas = {cluster.member(n).port for n in cluster.names if n != leader}
    lab.wait_until(lambda: srv_ports(consul, f"{SCOPE}-query.query.consul") == replicas,
                   30, 0.5, "query SRV = replicas")
    sw = cluster.switchover()
    new_port = cluster.member(sw["new"]).port
    lab.wait_until(lambda: srv_ports(consul, name) == {new_port}, 60, 0.5,
                   "writer SRV = new leader")
    wait_cluster_healthy(cluster)


def test_prepared_queries_consul_unreachable(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    r = run_helper("prepared-queries", "--consul-url", f"http://127.0.0.1:{lab.free_port()}",
                   ini=ini)
    assert r.returncode == 1 and "listing prepared queries" in r.stderr


def test_consul_requests_ignore_environment_proxy(tmp_path, acl_consul):
    """http_proxy & co. point at a listener that records what it gets: the
    helper talks to Consul directly; only [consul] proxy (here
    --consul-proxy) sends its requests, token included, through a proxy."""
    trap, fwd = ByteRecorder(), ForwardProxy(acl_consul.url)
    try:
        token_file = tmp_path / "token"
        token_file.write_text(acl_consul.token + "\n")
        ini = write_ini(tmp_path / "h.ini", acl_consul)
        env = proxy_environment(trap.url)
        r = run_helper("prepared-queries", "--consul-token-file", str(token_file), ini=ini,
                       env=env)
        assert r.returncode == 0, r.stderr
        names = {q["Name"] for q in acl_consul.api("GET", "/v1/query", token=acl_consul.token)}
        assert f"{SCOPE}-writer" in names
        assert trap.connections == 0 and trap.received == b"", trap
        r = run_helper("prepared-queries", "--consul-token-file", str(token_file),
                       f"--consul-proxy=http://127.0.0.1:{fwd.port}", ini=ini, env=env)
        assert r.returncode == 0 and "nothing changed" in r.stderr, r.stderr
        assert fwd.wait_request(f"GET {acl_consul.url}/v1/query", 5), fwd
        assert trap.connections == 0, trap
        assert acl_consul.token not in r.stderr + r.stdout
    finally:
        trap.close()
        fwd.close()


def test_bad_proxy_refused_with_file_line_key(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    text = ini.read_text().replace("[helper]", "proxy = http://127.0.0.1\n\n[helper]", 1)
    ini.write_text(text)
    line = text.splitlines().index("proxy = http://127.0.0.1") + 1
    r = run_helper("prepared-queries", ini=ini)
    assert r.returncode == 2
    assert f"{ini}:{line}: proxy: needs a port" in r.stderr, r.stderr


# --------------------------------------------------------------------------- register

def our_services(consul: lab.Consul) -> dict[str, dict]:
    return {k: v for k, v in consul.services().items() if k.startswith("pgbc-helper:")}


def check_status(consul: lab.Consul, service_id: str) -> str | None:
    for entry in consul.health_service(SCOPE):
        if entry["Service"]["ID"] == service_id:
            st = [c["Status"] for c in entry["Checks"] if c.get("ServiceID") == service_id]
            return st[0] if st else None
    return None


def expected_ids(cluster: lab.PatroniCluster, leader: str) -> set[str]:
    ids = {f"pgbc-helper:{SCOPE}:{leader}:writer"}
    for n in cluster.names:
        ids.add(f"pgbc-helper:{SCOPE}:{n}:any")
        if n != leader:
            ids.add(f"pgbc-helper:{SCOPE}:{n}:query")
    return ids


def test_register_follows_roles(tmp_path, consul, cluster):
    wait_cluster_healthy(cluster)
    daemons = {}
    for n in cluster.names:
        ini = write_ini(tmp_path / f"{n}.ini", consul, patroni_url=cluster.member(n).api_url)
        daemons[n] = Daemon(["register", "--interval", "1s", "--check-interval", "1s"], ini,
                            tmp_path / f"register-{n}.log")
    try:
        leader = cluster.wait_for_leader()
        lab.wait_until(lambda: set(our_services(consul)) == expected_ids(cluster, leader),
                       20, 0.3, "services registered")
        svcs = our_services(consul)
        w = svcs[f"pgbc-helper:{SCOPE}:{leader}:writer"]
        assert w["Service"] == SCOPE and w["Tags"] == ["primary"]
        assert w["Port"] == cluster.member(leader).port and w["Address"] == "127.0.0.1"
        assert all(s["Tags"] == ["replica"] for k, s in svcs.items() if k.endswith(":query"))
        lab.wait_until(lambda: all(check_status(consul, i) == "passing" for i in svcs),
                       20, 0.3, "checks passing")
        # the prepared queries select exactly these services
        assert run_helper("prepared-queries",
                          ini=write_ini(tmp_path / "pq.ini", consul)).returncode == 0
        all_ports = {cluster.member(n).port for n in cluster.names}
        lab.wait_until(lambda: srv_ports(consul, f"{SCOPE}-any.query.consul") == all_ports,
                       20, 0.5, "any SRV = every member")

        # switchover: writer moves, old leader becomes a query service
        sw = cluster.switchover()
        lab.wait_until(lambda: set(our_services(consul)) == expected_ids(cluster, sw["new"]),
                       30, 0.3, "services moved after switchover")
        wait_cluster_healthy(cluster)

        # Patroni of a replica stops: its services stop passing (Consul's own checks)
        victim = next(n for n in cluster.names if n != sw["new"])
        cluster.stop_member(victim)
        try:
            for role in ("query", "any"):
                sid = f"pgbc-helper:{SCOPE}:{victim}:{role}"
                lab.wait_until(lambda: check_status(consul, sid) == "critical", 15, 0.3,
                               f"{sid} critical")
        finally:
            cluster.start_member(victim)
            wait_cluster_healthy(cluster)
        before = set(our_services(consul))
    finally:
        for n, d in daemons.items():
            assert d.stop() == 0
            lab.log(f"register {n}:\n{d.log()}")
    # a clean stop keeps the services: writer DNS must not vanish on a restart
    try:
        assert set(our_services(consul)) == before
    finally:
        for k in list(our_services(consul)):
            consul.api("PUT", f"/v1/agent/service/deregister/{k}")


def test_register_once_and_ids_never_collide_with_patroni(tmp_path, consul, cluster):
    leader = cluster.wait_for_leader()
    ini = write_ini(tmp_path / "h.ini", consul, patroni_url=cluster.member(leader).api_url)
    try:
        assert run_helper("register", "--once", ini=ini).returncode == 0
        svcs = consul.services()
        assert f"{SCOPE}/{leader}" in svcs                # Patroni's own registration
        ours = [k for k in svcs if k.startswith("pgbc-helper:")]
        assert sorted(ours) == sorted([f"pgbc-helper:{SCOPE}:{leader}:writer",
                                       f"pgbc-helper:{SCOPE}:{leader}:any"])
        assert "/" not in "".join(ours)
        before = consul.services()
        r = run_helper("register", "--once", ini=ini)
        assert r.returncode == 0 and "registered service" not in r.stderr
        assert consul.services() == before
    finally:
        for k in list(our_services(consul)):
            consul.api("PUT", f"/v1/agent/service/deregister/{k}")


def test_register_finds_member_when_patroni_url_differs_from_api_url(tmp_path, consul,
                                                                     cluster):
    """patroni_url says localhost, the member's api_url (connect_address) 127.0.0.1."""
    leader = cluster.wait_for_leader()
    m = cluster.member(leader)
    assert m.api_url.startswith("http://127.0.0.1:")
    ini = write_ini(tmp_path / "h.ini", consul, patroni_url=f"http://localhost:{m.api_port}")
    try:
        r = run_helper("register", "--once", ini=ini)
        assert r.returncode == 0, r.stderr
        svcs = our_services(consul)
        assert sorted(svcs) == sorted([f"pgbc-helper:{SCOPE}:{leader}:writer",
                                       f"pgbc-helper:{SCOPE}:{leader}:any"])
        assert all(s["Address"] == "127.0.0.1" and s["Port"] == m.port for s in svcs.values())
    finally:
        for k in list(our_services(consul)):
            consul.api("PUT", f"/v1/agent/service/deregister/{k}")


def test_register_daemon_notify_sighup_sigterm(tmp_path, consul, cluster):
    """READY=1 on NOTIFY_SOCKET; SIGHUP rereads patroni_url and goes on; SIGTERM
    leaves the services registered."""
    import socket
    import tempfile
    wait_cluster_healthy(cluster)
    leader = cluster.wait_for_leader()
    replica = next(n for n in cluster.names if n != leader)
    sockdir = Path(tempfile.mkdtemp(prefix="h12b-", dir="/tmp"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sockdir / "notify"))
    sock.settimeout(20)
    ini = write_ini(tmp_path / "h.ini", consul, patroni_url=cluster.member(replica).api_url)
    d = Daemon(["register", "--interval", "1s"], ini, tmp_path / "register.log",
               env={"NOTIFY_SOCKET": str(sockdir / "notify")})
    rep_ids = {f"pgbc-helper:{SCOPE}:{replica}:query", f"pgbc-helper:{SCOPE}:{replica}:any"}
    lead_ids = {f"pgbc-helper:{SCOPE}:{leader}:writer", f"pgbc-helper:{SCOPE}:{leader}:any"}
    try:
        assert sock.recv(4096) == b"READY=1"
        lab.wait_until(lambda: set(our_services(consul)) == rep_ids, 20, 0.3,
                       "replica services")
        write_ini(ini, consul, patroni_url=cluster.member(leader).api_url)
        d.proc.send_signal(signal.SIGHUP)
        assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        assert sock.recv(4096) == b"READY=1"
        lab.wait_until(lambda: lead_ids <= set(our_services(consul)), 20, 0.3,
                       "leader services after SIGHUP")
        assert d.proc.poll() is None
        assert "configuration reloaded on SIGHUP" in d.log()
        assert d.stop() == 0
        assert sock.recv(4096) == b"STOPPING=1"
        assert set(our_services(consul)) == rep_ids | lead_ids
        assert "deregistered" not in d.log()
    finally:
        d.stop()
        lab.log(f"register:\n{d.log()}")
        sock.close()
        shutil.rmtree(sockdir, ignore_errors=True)
        for k in list(our_services(consul)):
            consul.api("PUT", f"/v1/agent/service/deregister/{k}")


def test_register_patroni_unreachable(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul, patroni_url=f"http://127.0.0.1:{lab.free_port()}")
    r = run_helper("register", "--once", ini=ini)
    assert r.returncode == 1 and "/patroni" in r.stderr


# --------------------------------------------------------------------------- maintenance

def test_maintenance_pause_then_resume(tmp_path, consul, cluster):
    name = cluster.names[1]
    ini = write_ini(tmp_path / "h.ini", consul, patroni_url=cluster.member(name).api_url)
    try:
        r = run_helper("maintenance", "pause", ini=ini)
        assert r.returncode == 0 and "paused" in r.stderr
        assert cluster.cluster_view().get("pause") is True
        st, cfg = cluster.rest(name, "/config")
        assert cfg.get("pause") is True
        lab.wait_until(lambda: all((cluster.rest(n, "/patroni")[1] or {}).get("pause")
                                   for n in cluster.names), 20, 0.3, "members paused")
        out = patronictl(cluster, "list")
        assert "Maintenance mode: on" in out
    finally:
        r = run_helper("maintenance", "resume", ini=ini)
    assert r.returncode == 0 and "resumed" in r.stderr
    assert not cluster.cluster_view().get("pause")
    assert "Maintenance mode" not in patronictl(cluster, "list")


def test_maintenance_bad_action_and_unreachable(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul, patroni_url=f"http://127.0.0.1:{lab.free_port()}")
    r = run_helper("maintenance", "snooze", ini=ini)
    assert r.returncode == 2 and "pause or resume" in r.stderr
    r = run_helper("maintenance", "pause", ini=ini)
    assert r.returncode == 1 and "PATCH" in r.stderr


# --------------------------------------------------------------------------- topology

def patronictl(cluster: lab.PatroniCluster, *args: str) -> str:
    r = cluster.patronictl(*args, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_topology_matches_patronictl(tmp_path, consul, cluster):
    wait_cluster_healthy(cluster)
    ini = write_ini(tmp_path / "h.ini", consul,
                    patroni_url=cluster.member(cluster.names[2]).api_url)
    r = run_helper("topology", "--json", ini=ini)
    assert r.returncode == 0
    topo = json.loads(r.stdout)
    ctl = json.loads(patronictl(cluster, "list", "-f", "json"))
    assert topo["scope"] == SCOPE == ctl[0]["Cluster"]
    with leader_conn(cluster) as c:
        num = int(c.execute("show server_version_num").fetchone()[0])
    assert topo["server_version_num"] == num and topo["next_major"] == num // 10000 + 1
    assert topo["leader"] == next(m["Member"] for m in ctl if m["Role"] == "Leader")
    mine = {m["name"]: m for m in topo["members"]}
    assert set(mine) == {m["Member"] for m in ctl}
    for m in ctl:
        t = mine[m["Member"]]
        assert f'{t["host"]}:{t["port"]}' == m["Host"]
        assert t["role"].lower() == m["Role"].lower().replace(" ", "_")
        assert t["state"] == m["State"] and t["timeline"] == m["TL"]
        if m["Role"] != "Leader":
            assert isinstance(t["lag"], int) and t["lag"] >= 0
            if cluster.install.major == "4":
                # 4.x names a streaming replica's state in /cluster "streaming"
                assert t["state"] == "streaming", t
    r = run_helper("topology", ini=ini)
    assert r.returncode == 0
    assert f"scope:          {SCOPE}" in r.stdout and f"leader:         {topo['leader']}" in r.stdout
    assert f"next major: {topo['next_major']}" in r.stdout


# --------------------------------------------------------------------------- backup

def pgbr_env(cluster: lab.PatroniCluster, pgbr: dict, name: str) -> dict:
    m = cluster.member(name)
    return {"PGBACKREST_CONFIG": str(pgbr["conf"]), "PGBACKREST_PG1_PATH": str(m.data_dir),
            "PGBACKREST_PG1_PORT": str(m.port), "PGBACKREST_PG1_SOCKET_PATH": str(m.socket_dir)}


def pgbr_info(cluster, pgbr, name) -> list:
    uid, gid = pg_ids()
    env = dict(os.environ, **pgbr_env(cluster, pgbr, name))
    r = subprocess.run(["pgbackrest", "--stanza=main", "--output=json", "info"],
                       capture_output=True, text=True, env=env, user=uid, group=gid,
                       extra_groups=[], cwd="/tmp", timeout=60)
    return json.loads(r.stdout)


def local_source(cluster, name) -> str:
    m = cluster.member(name)
    return (f"host=127.0.0.1 port={m.port} user={lab.PG_USER} password={lab.PG_PASSWORD} "
            "dbname=postgres")


def test_backup_hook_creates_stanza_and_check_passes(tmp_path, consul, cluster, pgbr):
    shutil.rmtree(pgbr["repo"], ignore_errors=True)
    leader = cluster.wait_for_leader()
    ini = write_ini(pgbr["dir"] / "helper.ini", consul)      # readable by postgres
    env = pgbr_env(cluster, pgbr, leader)
    r = run_helper("backup-hook", "on_role_change", "replica", SCOPE, ini=ini,
                   as_postgres=True, env=env)
    assert r.returncode == 0 and "nothing to do" in r.stderr and not pgbr["repo"].exists()
    r = run_helper("backup-hook", "on_role_change", cluster.primary_role, SCOPE, ini=ini,
                   as_postgres=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "exited with code 55" in r.stderr and "stanza-create done, check passed" in r.stderr
    assert pgbr["repo"].is_dir()
    info = pgbr_info(cluster, pgbr, leader)[0]
    assert info["status"]["message"] == "no valid backups" and info["db"], info
    uid, gid = pg_ids()
    check = subprocess.run(["pgbackrest", "--stanza=main", "check"], env=dict(os.environ, **env),
                           user=uid, group=gid, extra_groups=[], cwd="/tmp", timeout=120,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # second run: check passes at once
    r = run_helper("backup-hook", "on_role_change", cluster.primary_role, SCOPE, ini=ini,
                   as_postgres=True, env=env)
    assert r.returncode == 0 and "check passed, nothing to do" in r.stderr


def test_backup_hook_bad_arguments(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    r = run_helper("backup-hook", "on_role_change", "master", ini=ini)
    assert r.returncode == 2 and "ACTION ROLE SCOPE" in r.stderr


def test_backup_hook_bounded_by_timeout(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    fake = tmp_path / "slow-pgbackrest"
    pidfile = tmp_path / "slow.pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    fake.chmod(0o755)
    # the helper must stop the child itself: run_helper's own bound (30 s)
    # is below the child's 60 s
    r = run_helper("backup-hook", "--pgbackrest", str(fake), "--timeout", "1s",
                   "--repo-path", str(tmp_path / "repo"), "on_start", "master", SCOPE, ini=ini,
                   timeout=30)
    assert r.returncode == 1 and "did not finish within 1 s" in r.stderr
    assert not lab.pid_alive(int(pidfile.read_text()))


def test_backup_noop_on_replica_runs_on_primary(tmp_path, consul, cluster, pgbr):
    leader = cluster.wait_for_leader()
    ini = write_ini(pgbr["dir"] / "helper.ini", consul)      # readable by postgres
    env = pgbr_env(cluster, pgbr, leader)
    if not (pgbr["repo"] / "backup" / "main" / "backup.info").exists():
        assert run_helper("backup-hook", "on_start", cluster.primary_role, SCOPE, ini=ini,
                          as_postgres=True, env=env).returncode == 0
    replica = next(n for n in cluster.names if n != leader)
    before = len(pgbr_info(cluster, pgbr, leader)[0]["backup"])
    r = run_helper("backup", "--type", "full",
                   ini=write_ini(pgbr["dir"] / "helper-r.ini", consul,
                                 source=local_source(cluster, replica)),
                   as_postgres=True, env=pgbr_env(cluster, pgbr, replica))
    assert r.returncode == 0 and "replica" in r.stderr and "running pgbackrest" not in r.stderr
    assert len(pgbr_info(cluster, pgbr, leader)[0]["backup"]) == before
    ini = write_ini(pgbr["dir"] / "helper-l.ini", consul, source=local_source(cluster, leader))
    r = run_helper("backup", "--type", "full", ini=ini, as_postgres=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    backups = pgbr_info(cluster, pgbr, leader)[0]["backup"]
    assert len(backups) == before + 1 and backups[-1]["type"] == "full"
    r = run_helper("backup", "--type", "incr", ini=ini, as_postgres=True, env=env, timeout=300)
    assert r.returncode == 0
    assert pgbr_info(cluster, pgbr, leader)[0]["backup"][-1]["type"] == "incr"


def test_backup_pgbackrest_failure_exits_1_naming_its_code(tmp_path, consul, cluster):
    leader = cluster.wait_for_leader()
    fake = tmp_path / "pgbackrest"
    fake.write_text("#!/bin/sh\nexit 55\n")
    fake.chmod(0o755)
    ini = write_ini(tmp_path / "h.ini", consul, source=local_source(cluster, leader))
    r = run_helper("backup", "--type", "full", "--pgbackrest", str(fake), ini=ini)
    assert r.returncode == 1 and "pgbackrest exit code 55" in r.stderr, r.stderr


def test_password_on_argv_refused_before_anything_runs(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    for opt in ("--source", "--pgbouncer-admin"):
        r = run_helper("backup", "--type", "full", opt,
                       f"host=127.0.0.1 port={lab.free_port()} user=u password=argv-secret",
                       ini=ini)
        assert r.returncode == 2, r.stderr
        assert "refusing a password on the command line" in r.stderr, r.stderr
        assert "argv-secret" not in r.stderr and "cannot connect" not in r.stderr


def test_password_never_logged(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul,
                    source=f"host=127.0.0.1 port={lab.free_port()} user=u password=ini-secret")
    with ini.open("a") as f:
        f.write("[upgrade]\nconnect_options = PGPASSWORD=co-secret -p %p\n")
    r = run_helper("backup", "--type", "full", ini=ini)
    assert r.returncode == 1 and "ini-secret" not in r.stderr + r.stdout, r.stderr
    r = run_helper("upgrade", "plan", "--to-version", "16", ini=ini)
    assert "co-secret" not in r.stderr + r.stdout, r.stdout + r.stderr


def test_config_option_after_subcommand_refused(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    r = run_helper("topology", "-c", str(ini))
    assert r.returncode == 2 and "-c must come before the subcommand" in r.stderr, r.stderr


def test_backup_local_postgres_unreachable(tmp_path, consul):
    ini = write_ini(tmp_path / "h.ini", consul)
    r = run_helper("backup", "--type", "full", "--source",
                   f"host=127.0.0.1 port={lab.free_port()} user=postgres dbname=postgres", ini=ini)
    assert r.returncode == 1 and "cannot connect to the local postgres" in r.stderr


# --------------------------------------------------------------------------- ACL token

def test_userlist_sync_with_acl_token(tmp_path, acl_consul, cluster):
    """Leader records copied into an ACL-enabled agent: the token from token_file
    opens it, no token gets a 403, and the token is never printed."""
    leader = cluster.wait_for_leader()
    record = cluster.member_record(leader)
    acl_consul.kv_put(f"service/{SCOPE}/members/{leader}", json.dumps(record))
    acl_consul.kv_put(f"service/{SCOPE}/leader", leader)
    token_file = tmp_path / "token"
    token_file.write_text(acl_consul.token + "\n")
    auth = tmp_path / "userlist.txt"
    ini = write_ini(tmp_path / "h.ini", acl_consul, auth_file=str(auth),
                    source=f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres")
    r = run_helper("userlist-sync", "--once", ini=ini)
    assert r.returncode == 1 and "HTTP 403" in r.stderr and not auth.exists()
    r = run_helper("userlist-sync", "--once", "--consul-token-file", str(token_file), ini=ini)
    assert r.returncode == 0, r.stderr
    assert "plain_md5" in parse_userlist(auth.read_text())
    assert acl_consul.token not in r.stderr + r.stdout
    r = run_helper("userlist-sync", "--once", "--consul-token-file", str(tmp_path / "none"),
                   ini=ini)
    assert r.returncode == 2 and "token_file" in r.stderr


def test_backup_hook_as_patroni_callback_on_switchover(consul, cluster, pgbr):
    """A real on_role_change: the promoted member's callback recreates the stanza."""
    wait_cluster_healthy(cluster)
    shutil.rmtree(pgbr["repo"], ignore_errors=True)
    pgbr["hooks_on"].touch()
    try:
        sw = cluster.switchover()
        log = pgbr["dir"] / f"hook-{sw['new']}.log"
        lab.wait_until(lambda: "stanza-create done, check passed" in log.read_text(), 120, 0.5,
                       f"callback on {sw['new']}")
        text = log.read_text()
        # Patroni calls back with its own name for the role: master (3.x), primary (4.x)
        assert f"on_role_change as {cluster.primary_role} of scope raddb" in text
        assert pgbr["repo"].is_dir()
        old_log = pgbr["dir"] / f"hook-{sw['old']}.log"
        lab.wait_until(old_log.exists, 30, 0.5, "callback on the demoted member")
        lab.wait_until(lambda: "on_role_change as replica: nothing to do" in old_log.read_text(),
                       30, 0.5, "demoted member's callback")
    finally:
        pgbr["hooks_on"].unlink()
        wait_cluster_healthy(cluster)


def test_backup_hook_refuses_stanza_of_another_system(tmp_path, consul, cluster, pgbr):
    """The repository holds the stanza of another PostgreSQL 15 system (a second
    cluster configured with the same repository and stanza): check exits 28
    (FileInvalid in pgBackRest 2.45's error list, not 51 BackupMismatch), and
    the hook refuses stanza-upgrade instead of adopting the other system's
    stanza."""
    uid, gid = pg_ids()
    other = lab.make_workdir("pgbc-helper-other-")
    port = lab.free_port()
    as_pg = dict(user=uid, group=gid, extra_groups=[], cwd="/tmp", capture_output=True,
                 text=True, timeout=120)
    shutil.rmtree(pgbr["repo"], ignore_errors=True)
    try:
        r = subprocess.run([str(lab.PG_BIN / "initdb"), "-D", str(other / "data"), "-A", "trust",
                            "-U", "postgres"], **as_pg)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([str(lab.PG_BIN / "pg_ctl"), "-D", str(other / "data"), "-w", "-l",
                            str(other / "log"), "-o", f"-p {port} -k {other} -c listen_addresses=''",
                            "start"], **as_pg)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(["pgbackrest", f"--config={pgbr['conf']}", "--stanza=main",
                            f"--pg1-path={other}/data", f"--pg1-port={port}",
                            f"--pg1-socket-path={other}", "stanza-create"], **as_pg)
        assert r.returncode == 0, r.stderr
        ctl = subprocess.run([str(lab.PG_BIN / "pg_controldata"), str(other / "data")],
                             env=dict(os.environ, LC_ALL="C"), **as_pg).stdout
        other_id = re.search(r"Database system identifier:\s+(\d+)", ctl).group(1)
    finally:
        subprocess.run([str(lab.PG_BIN / "pg_ctl"), "-D", str(other / "data"), "-w", "-m", "fast",
                        "stop"], **as_pg)
        shutil.rmtree(other, ignore_errors=True)
    leader = cluster.wait_for_leader()
    ini = write_ini(pgbr["dir"] / "helper.ini", consul)
    r = run_helper("backup-hook", "on_role_change", cluster.primary_role, SCOPE, ini=ini,
                   as_postgres=True, env=pgbr_env(cluster, pgbr, leader))
    assert r.returncode == 1, r.stderr
    assert "check exited with code 28" in r.stderr
    assert f"stanza main belongs to database system {other_id} (PostgreSQL 15), not to " \
           "this one" in r.stderr and "refusing stanza-upgrade" in r.stderr
    assert "running pgbackrest --stanza=main stanza-upgrade" not in r.stderr
    # the other system's stanza is untouched: still its system-id, one db entry
    dbs = pgbr_info(cluster, pgbr, leader)[0]["db"]
    assert [str(d["system-id"]) for d in dbs] == [other_id], dbs
    # the codes the hook acts on, from the installed pgBackRest 2.45 itself
    r = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "pgBackRest 2.45"
    shutil.rmtree(pgbr["repo"], ignore_errors=True)
    r = subprocess.run(["pgbackrest", "--stanza=main", "check"], capture_output=True, text=True,
                       env=dict(os.environ, **pgbr_env(cluster, pgbr, leader)), **{
                           k: v for k, v in as_pg.items() if k not in ("capture_output", "text")})
    assert r.returncode == 55 and "[055]" in r.stdout + r.stderr      # FileMissingError
