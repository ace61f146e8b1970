"""pgbouncer-helper upgrade and restore against the real lab: a 3-member Patroni
cluster on PostgreSQL 13 (Debian bullseye's binaries from a private prefix) is
upgraded to 15 with `upgrade run`, then restored from pgBackRest with `restore run`.
Patroni is bookworm's 3.0.2, trixie's 4.0.7 with PGBC_PATRONI=4 or sid's 4.1.5
with PGBC_PATRONI=4.1 (see lab.py).

    /usr/bin/python3 -m pytest -v tests/integration/test_upgrade_restore.py   (as root)

PostgreSQL 13 is fetched once with apt-get download from a private bullseye
sources list (apt verifies it) and unpacked with dpkg -x under
$PGBC_CACHE/pg13-bullseye (default /var/cache/pgbouncer-consul); bullseye's libpq5
is never unpacked.  Patroni runs 13 through wrapper scripts that set
LD_LIBRARY_PATH.  Members are stopped and started for the helper by a small HTTP
control server in this process (patroni_stop/patroni_start are curl calls), so the
lab keeps stopping Patroni by PID.  Tests run in file order on one cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

import fork
import lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900, method="signal")]

HELPER = os.environ.get("PGBC_HELPER", str(lab.REPO / "helper/pgbouncer-helper"))
SCOPE = "raddb"
PG13_DEBS = ["postgresql-13", "postgresql-client-13", "libicu67", "libldap-2.4-2",
             "libllvm11", "libssl1.1"]
ROWS = 5000
# `patronictl edit-config` values upgrade and restore must carry over (the lab
# bootstraps with ttl 20, loop_wait 2 and no work_mem)
EDITED = {"ttl": 23, "loop_wait": 3, "postgresql": {"parameters": {"work_mem": "7MB"}}}


# --------------------------------------------------------------------------- PostgreSQL 13

def fetch_pg13(cache: Path) -> Path:
    """Prefix with bullseye's PostgreSQL 13 unpacked (fetched once, then cached)."""
    d = cache / "pg13-bullseye"
    root = d / "root"
    if (root / "usr/lib/postgresql/13/bin/postgres").exists():
        return root
    (d / "lists/partial").mkdir(parents=True, exist_ok=True)
    (d / "debs").mkdir(exist_ok=True)
    (d / "sources.list").write_text(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://deb.debian.org/debian bullseye main\n")
    o = [f"-o=Dir::Etc::SourceList={d}/sources.list", "-o=Dir::Etc::SourceParts=/dev/null",
         f"-o=Dir::State::Lists={d}/lists", f"-o=Dir::Cache={d}/cache"]
    subprocess.run(["apt-get", *o, "update"], check=True, capture_output=True, timeout=600)
    subprocess.run(["apt-get", *o, "download", *PG13_DEBS], check=True, capture_output=True,
                   cwd=d / "debs", timeout=600)
    tmp = d / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in sorted((d / "debs").glob("*.deb")):
        if deb.name.startswith("libpq5"):
            continue            # bookworm's pg_upgrade needs bookworm's libpq
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True, timeout=300)
    tmp.rename(root)
    return root


def make_bin_dirs(wd: Path, pg13: Path) -> Path:
    """<wd>/bin/13: wrappers running 13 with its libraries; <wd>/bin/15: symlinks."""
    base = wd / "bin"
    libs = pg13 / "usr/lib/x86_64-linux-gnu"
    real13 = pg13 / "usr/lib/postgresql/13/bin"
    (base / "13").mkdir(parents=True)
    for exe in real13.iterdir():
        w = base / "13" / exe.name
        w.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH={libs} exec {exe} "$@"\n')
        w.chmod(0o755)
    (base / "15").mkdir()
    for exe in lab.PG_BIN.iterdir():
        (base / "15" / exe.name).symlink_to(exe)
    return base


# --------------------------------------------------------------------------- lab pieces

class VersionedMember(lab.Member):
    """A lab member whose data directory is <dir>/pg<version>."""
    version: int = 13

    @property
    def data_dir(self) -> Path:
        return self.dir / f"pg{self.version}"


class PG13Cluster(lab.PatroniCluster):
    """The lab cluster on PostgreSQL 13 (bin_dir = wrappers), data in <member>/pg13,
    archiving to pgBackRest."""

    def __init__(self, workdir, consul, bin_base: Path, pgbr_conf: Path, **kw):
        self.bin_base = bin_base
        self.pgbr_conf = pgbr_conf
        kw.setdefault("pg_parameters", {
            "archive_mode": "on",
            "archive_command": f"pgbackrest --config={pgbr_conf} --stanza=main "
                               f'--pg1-path="$PWD" archive-push %p'})
        super().__init__(workdir, consul, **kw)
        for n, m in list(self._members.items()):
            self._members[n] = VersionedMember(name=m.name, port=m.port, api_port=m.api_port,
                                               dir=m.dir)

    def config_for(self, m: lab.Member) -> dict:
        cfg = super().config_for(m)
        cfg["postgresql"]["data_dir"] = str(m.dir / "pg13")
        cfg["postgresql"]["bin_dir"] = str(self.bin_base / "13")
        return cfg

    def set_version(self, v: int) -> None:
        for m in self._members.values():
            m.version = v


class Control:
    """HTTP control the helper's patroni_stop/patroni_start call:
    GET /stop/<member>, /start/<member> -> lab stop_member/start_member."""

    def __init__(self, cluster: lab.PatroniCluster):
        self.cluster = cluster
        self.port = lab.free_port()
        ctl = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parts = self.path.strip("/").split("/")
                ok = len(parts) == 2 and parts[1] in ctl.cluster.names
                try:
                    if ok and parts[0] == "stop":
                        ctl.cluster.stop_member(parts[1])
                    elif ok and parts[0] == "start":
                        ctl.cluster.start_member(parts[1])
                    else:
                        ok = False
                except Exception as e:  # noqa: BLE001
                    lab.log(f"control {self.path}: {e!r}")
                    ok = False
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def command(self, action: str) -> str:
        return f"curl -sf --noproxy '*' -m 120 http://127.0.0.1:{self.port}/{action}/%m"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def as_pg() -> dict:
    pw = pwd.getpwnam(lab.PG_USER)
    return dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd="/tmp")


def run_helper(ini: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    r = subprocess.run([HELPER, "-c", str(ini), *args], capture_output=True, text=True,
                       timeout=timeout, cwd="/tmp")
    lab.log(f"helper {' '.join(args)} -> rc={r.returncode} in {time.monotonic() - t0:.1f}s\n"
            f"{r.stdout}{r.stderr}")
    return r


def pgbackrest(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(["pgbackrest", *args], capture_output=True, text=True,
                       env=dict(os.environ, **env), timeout=timeout, **as_pg())
    lab.log(f"pgbackrest {' '.join(args)} -> rc={r.returncode}\n{r.stdout[-2000:]}"
            f"{r.stderr[-2000:]}")
    return r


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lab13(consul, lab_cache, request):
    if not os.access(HELPER, os.X_OK):
        pytest.fail(f"{HELPER} missing: build pgbouncer-helper first")
    try:
        pg13 = fetch_pg13(lab_cache)
    except (subprocess.SubprocessError, OSError) as e:
        pytest.fail(f"cannot fetch bullseye's postgresql-13: {e}")
    wd = lab.make_workdir("pgbc-upg-")
    bins = make_bin_dirs(wd, pg13)
    (wd / "state").mkdir()
    pgbr = wd / "pgbr"
    for sub in ("log", "lock"):
        (pgbr / sub).mkdir(parents=True)
    conf = pgbr / "pgbackrest.conf"
    conf.write_text(f"[global]\nrepo1-path={pgbr}/repo\nlog-path={pgbr}/log\n"
                    f"lock-path={pgbr}/lock\nstart-fast=y\narchive-timeout=60\n"
                    "log-level-console=warn\nlog-level-file=off\n\n[main]\npg1-user=postgres\n")
    lab.chown_tree(wd)
    cluster = PG13Cluster(wd / "cluster", consul, bins, conf, scope=SCOPE)
    control = Control(cluster)
    try:
        t0 = time.monotonic()
        cluster.start(timeout=120)
        lab.record_timing("pg13_cluster_start", time.monotonic() - t0)
        leader = cluster.leader()
        env = pgbr_env(cluster, conf, leader)
        assert pgbackrest(env, "--stanza=main", "stanza-create").returncode == 0
        yield {"wd": wd, "cluster": cluster, "control": control, "conf": conf,
               "bins": bins, "ini": write_ini(wd, cluster, control, consul, conf)}
    finally:
        control.stop()
        cluster.stop()
        if os.environ.get("PGBC_KEEP") or request.session.__dict__.get("_lab_failed"):
            lab.log(f"keeping {wd}")
        else:
            shutil.rmtree(wd, ignore_errors=True)


def pgbr_env(cluster: lab.PatroniCluster, conf: Path, name: str) -> dict:
    m = cluster.member(name)
    return {"PGBACKREST_CONFIG": str(conf), "PGBACKREST_PG1_PATH": str(m.data_dir),
            "PGBACKREST_PG1_PORT": str(m.port), "PGBACKREST_PG1_SOCKET_PATH": str(m.socket_dir)}


def write_ini(wd: Path, cluster: PG13Cluster, control: Control, consul: lab.Consul,
              conf: Path) -> Path:
    cdir = cluster.workdir
    first = cluster.member(cluster.names[0])
    ini = wd / "helper.ini"
    ini.write_text(
        f"[consul]\nurl = {consul.url}\nnamespace = service\n\n"
        f"[helper]\nscope = {SCOPE}\npatroni_url = {first.api_url}\n"
        f"source = user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres\n"
        "pgbackrest_stanza = main\n\n"
        "[upgrade]\n"
        "member_command = runuser -u postgres -- sh -c\n"
        f"patroni_config = {cdir}/%m/patroni.yml\n"
        f"data_dir = {cdir}/%m/pg%v\n"
        f"bin_dir = {wd}/bin/%v\n"
        f"patroni_stop = {control.command('stop')}\n"
        f"patroni_start = {control.command('start')}\n"
        f"connect_options = -h {cdir}/%m -p %p -U postgres\n"
        # port/socket in the environment: restore refuses them on its command line
        f"pgbackrest = env PGBACKREST_PG1_PORT=%p PGBACKREST_PG1_SOCKET_PATH={cdir}/%m "
        f"pgbackrest --config={conf} --pg1-path=%d\n"
        f"state_dir = {wd}/state\n"
        "step_timeout = 10m\n")
    return ini


def leader_conn(cluster: lab.PatroniCluster) -> psycopg.Connection:
    return psycopg.connect(cluster.dsn(cluster.wait_for_leader(timeout=60)), autocommit=True)


def server_versions(cluster: lab.PatroniCluster) -> dict[str, int]:
    out = {}
    for n in cluster.names:
        with psycopg.connect(cluster.dsn(n), autocommit=True) as c:
            out[n] = int(c.execute("show server_version_num").fetchone()[0])
    return out


def wait_replicas_have(cluster: lab.PatroniCluster, sql: str, want) -> None:
    leader = cluster.leader()
    for n in cluster.names:
        if n == leader:
            continue

        def seen(n=n):
            with psycopg.connect(cluster.dsn(n), autocommit=True) as c:
                return c.execute(sql).fetchone()[0] == want
        lab.wait_until(seen, 60, 0.3, f"{sql} = {want} on {n}")


def edit_config(cluster: lab.PatroniCluster) -> None:
    """What `patronictl edit-config` does: PATCH /config on the leader."""
    st, body = cluster.rest(cluster.leader(), "/config", "PATCH", EDITED, timeout=10)
    assert st == 200, body
    wait_edited_config(cluster)


def wait_edited_config(cluster: lab.PatroniCluster) -> None:
    """EDITED is in the DCS (GET /config) and in effect on every member."""
    leader = cluster.wait_for_leader(timeout=60)
    st, cfg = cluster.rest(leader, "/config")
    assert st == 200, cfg
    assert cfg["ttl"] == EDITED["ttl"] and cfg["loop_wait"] == EDITED["loop_wait"], cfg
    params = cfg["postgresql"]["parameters"]
    assert params["work_mem"] == "7MB", cfg
    assert "archive-push" in params["archive_command"], cfg      # the rest is still there

    def in_effect():
        for n in cluster.names:
            with psycopg.connect(cluster.dsn(n), autocommit=True) as c:
                if c.execute("show work_mem").fetchone()[0] != "7MB":
                    return False
        return True
    lab.wait_until(in_effect, 60, 0.5, "work_mem = 7MB on every member")


def wait_archived(conn: psycopg.Connection) -> None:
    """Switch WAL and wait until pg_stat_archiver shows that segment archived."""
    seg = conn.execute("select pg_walfile_name(pg_switch_wal())").fetchone()[0]
    lab.wait_until(lambda: (conn.execute("select last_archived_wal from pg_stat_archiver")
                            .fetchone()[0] or "") >= seg, 120, 0.3, f"{seg} archived")


def assert_progress_line(stderr: str, pattern: str) -> None:
    assert re.search(pattern, stderr), f"no line matching {pattern!r} in:\n{stderr}"


def assert_still_lines(stderr: str) -> None:
    """Which wait or command outlasts the 200 ms interval depends on the machine,
    so no particular one is asked for: the run (seconds of waits) printed some
    "still" lines, each in the documented form."""
    still = [ln for ln in stderr.splitlines() if " LOG still " in ln]
    assert still, f"no progress line in:\n{stderr}"
    for ln in still:
        assert re.search(r"LOG still (waiting for .+: \d+ s of \d+ s, last seen: \S.*"
                         r"|running .+ on \S+: \d+ s of \d+ s)$", ln), ln


def assert_wait_progress(stderr: str, what: str, limit: int) -> None:
    """A wait's start and end lines (its 'still' lines depend on how long it took)."""
    w = re.escape(what)
    assert_progress_line(stderr, rf"LOG waiting for {w} \(up to {limit} s\)")
    assert_progress_line(stderr, rf"LOG done waiting for {w} after \d+\.\d s")


def assert_start_progress(stderr: str, leader: str, replicas: list[str]) -> None:
    """The waits for the leader, the re-cloned replicas and their streaming."""
    assert_wait_progress(stderr, f"{leader} to run as primary of version 15", 300)
    for n in replicas:
        assert_wait_progress(stderr, f"{n} to run as replica of version 15", 300)
    assert_wait_progress(stderr, f"every replica to stream from {leader}", 300)
    assert_still_lines(stderr)


def assert_upgrade_progress(stderr: str, leader: str, replicas: list[str]) -> None:
    """Steps 5-11 of an upgrade run said what they were doing (--progress 200ms)."""
    for what in ("pg_upgrade --check", "pg_upgrade"):
        assert_progress_line(stderr, rf"LOG running {what} on {leader} \(up to 600 s\)")
        assert_progress_line(stderr, rf"LOG finished {what} on {leader} after \d+\.\d s")
    # its own output, under the member's name
    assert_progress_line(stderr, rf"LOG \[{leader}\] Performing Consistency Checks")
    assert_start_progress(stderr, leader, replicas)
    # the failing stanza-upgrade (absent pgbackrest config) ran with progress too
    assert_progress_line(stderr, rf"LOG running pgbackrest stanza-upgrade on {leader}")
    assert_progress_line(stderr, rf"LOG failed: pgbackrest stanza-upgrade on {leader} after")
    assert f"password={lab.PG_PASSWORD}" not in stderr      # source's, masked if ever shown


def assert_restore_progress(stderr: str, leader: str, replicas: list[str]) -> None:
    """Steps 5-10 of a restore run said what they were doing (--progress 200ms)."""
    assert_progress_line(stderr, rf"LOG running pgbackrest restore on {leader} \(up to 600 s\)")
    assert_progress_line(stderr, rf"LOG \[{leader}\] .*INFO: restore command begin")
    assert_progress_line(stderr, rf"LOG \[{leader}\] .*INFO: restore command end: completed")
    assert_progress_line(stderr, rf"LOG finished pgbackrest restore on {leader} after")
    assert_wait_progress(stderr, f"{leader} to reach the recovery target and leave recovery",
                         300)
    assert_start_progress(stderr, leader, replicas)
    assert f"password={lab.PG_PASSWORD}" not in stderr


# --------------------------------------------------------------------------- usage

def test_upgrade_restore_help_and_bad_arguments(tmp_path):
    ini = tmp_path / "h.ini"
    ini.write_text("[helper]\nscope = raddb\n")
    for sub in ("upgrade", "restore"):
        r = run_helper(ini, sub, "--help")
        assert r.returncode == 0 and f"pgbouncer-helper [-c FILE] {sub} plan|run" in r.stdout
    assert run_helper(ini, "upgrade", "run").stderr.count("--to-version is required") == 1
    r = run_helper(ini, "upgrade", "frob", "--to-version", "15")
    assert r.returncode == 2 and "upgrade needs plan or run" in r.stderr
    r = run_helper(ini, "upgrade", "plan", "--to-version", "15", "--from-step", "13")
    assert r.returncode == 2 and "not a step number (1..12)" in r.stderr
    r = run_helper(ini, "restore", "plan", "--progress", "0")
    assert r.returncode == 2 and '--progress: "0": must be > 0' in r.stderr
    r = run_helper(ini, "upgrade", "plan", "--to-version", "15", "--progress", "soon")
    assert r.returncode == 2 and '--progress: "soon": ' in r.stderr
    r = run_helper(ini, "restore", "run", "--set", "x;rm -rf /")
    assert r.returncode == 2 and "is not a pgBackRest backup label" in r.stderr
    r = run_helper(ini, "restore", "plan", "--upgrade-data-dir", "relative/%m")
    assert r.returncode == 2 and "data_dir: must be an absolute path" in r.stderr
    r = run_helper(ini, "restore", "plan", "--type", "time")
    assert r.returncode == 2 and "--type: \"time\" is not default or immediate" in r.stderr
    r = run_helper(ini, "restore", "plan", "--type", "immediate", "--target-time", "2026-01-02")
    assert r.returncode == 2 and "--type immediate and --target-time" in r.stderr
    # no scope: never a DELETE of service//
    noscope = tmp_path / "noscope.ini"
    noscope.write_text("[helper]\npatroni_url = http://127.0.0.1:9\n")
    for sub in (["upgrade", "plan", "--to-version", "15"], ["restore", "plan"],
                ["restore", "run"]):
        r = run_helper(noscope, *sub)
        assert r.returncode == 2 and "scope is not set" in r.stderr, sub
        assert "DELETE" not in r.stdout


# --------------------------------------------------------------------------- upgrade

def test_upgrade_plan_lists_commands_and_changes_nothing(lab13):
    cluster, ini = lab13["cluster"], lab13["ini"]
    edit_config(cluster)
    with leader_conn(cluster) as c:
        c.execute("create table upg (id int primary key, payload text)")
        c.execute(f"insert into upg select g, md5(g::text) from generate_series(1, {ROWS}) g")
    cluster.wait_healthy(60)
    before = cluster.consul.kv_list(cluster.prefix)
    r = run_helper(ini, "upgrade", "plan", "--to-version", "15")
    assert r.returncode == 0, r.stderr
    leader = cluster.leader()
    cdir = cluster.workdir
    out = r.stdout
    assert f"PostgreSQL 13 -> 15, leader {leader}" in out
    assert len(re.findall(r"^step \d+/12: ", out, re.M)) == 12
    assert f"{lab13['bins']}/15/pg_upgrade -b {lab13['bins']}/13 -B {lab13['bins']}/15 " \
           f"-d {cdir}/{leader}/pg13 -D {cdir}/{leader}/pg15" in out
    assert "--data-checksums" in out and "--encoding=UTF8" in out
    assert f"DELETE {cluster.consul.url}/v1/kv/service/{SCOPE}/?recurse" in out
    for n in cluster.names:
        assert f"[{n}] runuser -u postgres -- sh -c 'curl" in out
    assert "dynamic configuration saved from the DCS: loop_wait 3, ttl 23" in out
    assert f"PUT {cluster.consul.url}/v1/kv/service/{SCOPE}/config?cas=0" in out
    # nothing changed
    assert cluster.consul.kv_list(cluster.prefix).keys() == before.keys()
    assert not (cdir / leader / "pg15").exists()
    assert not any((lab13["wd"] / "state").iterdir())
    assert server_versions(cluster)[leader] // 10000 == 13


def test_upgrade_refuses_target_not_newer_paused_and_missing_binaries(lab13, tmp_path):
    cluster, ini = lab13["cluster"], lab13["ini"]
    r = run_helper(ini, "upgrade", "run", "--to-version", "13")
    assert r.returncode == 1 and "not newer than the running major version 13" in r.stderr
    r = run_helper(ini, "upgrade", "run", "--to-version", "16")
    assert r.returncode == 1 and "missing: " in r.stderr and "/bin/16/" in r.stderr
    assert "missing binaries" in r.stderr
    cluster.pause()
    try:
        r = run_helper(ini, "upgrade", "run", "--to-version", "15")
        assert r.returncode == 1 and "is paused" in r.stderr
    finally:
        cluster.resume()
    r = run_helper(ini, "upgrade", "run", "--to-version", "15", "--from-step", "4")
    assert r.returncode == 2 and "no state file" in r.stderr
    assert server_versions(cluster)[cluster.leader()] // 10000 == 13


def test_upgrade_run_stops_at_broken_step_and_resumes(lab13):
    cluster, ini, bins = lab13["cluster"], lab13["ini"], lab13["bins"]
    cluster.wait_healthy(60)
    old_leader = cluster.leader()
    # a broken pg_upgrade in the new bin dir: step 5 must fail and stop the run
    broken = bins / "15" / "pg_upgrade"
    broken.unlink()
    broken.write_text("#!/bin/sh\necho 'pg_upgrade: broken on purpose' >&2\nexit 1\n")
    broken.chmod(0o755)
    t0 = time.monotonic()
    r = run_helper(ini, "upgrade", "run", "--to-version", "15")
    assert r.returncode == 1
    assert re.search(r"step 5/\d+ \(pg_upgrade --check, then pg_upgrade \(leader\)\) failed",
                     r.stderr)
    assert "resume with: pgbouncer-helper [-c FILE] upgrade run --to-version 15 " \
           "--from-step 5" in r.stderr
    assert not re.search(r"step 6/\d+", r.stderr)
    state = (lab13["wd"] / "state" / f"upgrade-{SCOPE}.state").read_text()
    assert "status=failed" in state and "next_step=5" in state
    assert '"loop_wait":3' in state          # the saved /config, for a resumed run
    # a plain run now refuses: the state file says an upgrade is half-way
    r2 = run_helper(ini, "upgrade", "run", "--to-version", "15")
    assert r2.returncode == 1 and "stopped at step 5" in r2.stderr
    # fix, resume
    broken.unlink()
    broken.symlink_to(lab.PG_BIN / "pg_upgrade")
    # pgbackrest broken too: the run stops at the stanza-upgrade, with the cluster on 15
    r = run_helper(ini, "upgrade", "run", "--to-version", "15", "--from-step", "5",
                   "--progress", "200ms",
                   "--upgrade-pgbackrest", f"pgbackrest --config={lab13['wd']}/absent.conf "
                   "--pg1-path=%d", timeout=900)
    assert r.returncode == 1
    assert_upgrade_progress(r.stderr, old_leader, [n for n in cluster.names if n != old_leader])
    assert re.search(r"step 11/\d+ \(pgbackrest stanza-upgrade and check \(leader\)\) failed",
                     r.stderr), r.stderr
    # a copying pg_upgrade (no --link): the free space was checked first
    assert re.search(r"free space for the copy: \S+/pg13 holds \d+ MB, \S+ has \d+ MB free",
                     r.stderr), r.stderr
    # the Patroni callback on the upgraded primary: check exits 28, the repository's
    # database is the old PostgreSQL 13 system (pg_upgrade gave 15 a new system-id), so
    # this is the major upgrade backup-hook may do stanza-upgrade for
    cluster.set_version(15)
    # with the role name this Patroni passes its callbacks (master on 3.x, primary on 4.x)
    hook = subprocess.run([HELPER, "-c", str(ini), "backup-hook", "on_role_change",
                           cluster.primary_role, SCOPE], capture_output=True, text=True,
                          timeout=300,
                          env=dict(os.environ, **pgbr_env(cluster, lab13["conf"], old_leader)),
                          **as_pg())
    lab.log(f"backup-hook -> rc={hook.returncode}\n{hook.stderr}")
    assert hook.returncode == 0, hook.stderr
    assert "check exited with code 28" in hook.stderr
    assert re.search(r"repository database system \d+ \(PostgreSQL 13\), this one \d+ "
                     r"\(PostgreSQL 15", hook.stderr), hook.stderr
    assert "stanza-upgrade done, check passed" in hook.stderr
    r = run_helper(ini, "upgrade", "run", "--to-version", "15", "--from-step", "11",
                   timeout=900)
    # pgbackrest's own console output (info), logged line by line under the member
    assert re.search(rf"\[{old_leader}\] .*INFO: stanza-upgrade command begin", r.stderr), \
        r.stderr
    assert f"finished pgbackrest stanza-upgrade on {old_leader} after" in r.stderr
    elapsed = time.monotonic() - t0
    lab.record_timing("upgrade_13_to_15_total_wall", elapsed)
    assert r.returncode == 0, r.stderr
    assert "upgrade of scope raddb finished" in r.stderr
    assert "$ runuser -u postgres -- sh -c" in r.stderr      # commands are logged
    cluster.wait_healthy(120)
    assert cluster.leader() == old_leader
    versions = server_versions(cluster)
    assert all(v // 10000 == 15 for v in versions.values()), versions
    with leader_conn(cluster) as c:
        assert c.execute("select count(*), sum(id) from upg").fetchone() == \
            (ROWS, ROWS * (ROWS + 1) // 2)
        c.execute("insert into upg values (-1, 'after upgrade')")
    wait_replicas_have(cluster, "select count(*) from upg", ROWS + 1)
    # old data directories kept
    for n in cluster.names:
        assert (cluster.workdir / n / "pg13" / "PG_VERSION").exists()
    # pgBackRest: the stanza was upgraded and check passes on the leader
    env = pgbr_env(cluster, lab13["conf"], cluster.leader())
    assert pgbackrest(env, "--stanza=main", "check").returncode == 0
    # the fork follows the upgraded cluster, and a switchover works on it
    bouncer = fork.Bouncer(lab.make_workdir("pgbc-bouncer-"), cluster.consul,
                           {"upg": fork.db_line(SCOPE)}).start()
    try:
        bouncer.wait_row("upg", lambda r: r["state"] == "following"
                         and r["member"] == cluster.leader(), 15)
        assert bouncer.value("upg", "show server_version_num").startswith("15")
        sw = cluster.switchover()
        cluster.wait_healthy(90)
        bouncer.wait_row("upg", lambda r: r["member"] == sw["new"], 30)
        assert bouncer.value("upg", "select count(*) from upg") == ROWS + 1
    finally:
        bouncer.stop()
    lab.log(f"switchover after upgrade: {sw['old']} -> {sw['new']} in {sw['seconds']:.1f}s")
    # the edit-config values survived the removal of the DCS state
    wait_edited_config(cluster)


# --------------------------------------------------------------------------- restore

def test_restore_replays_archived_wal(lab13):
    """The default restore replays every archived WAL: rows written after the last
    backup are there afterwards; --type immediate is what stops at the backup."""
    cluster, ini = lab13["cluster"], lab13["ini"]
    cluster.wait_healthy(90)
    leader = cluster.leader()       # the restore keeps it (the run below stops it first)
    env = pgbr_env(cluster, lab13["conf"], leader)
    with leader_conn(cluster) as c:
        c.execute("create table rst (id int primary key)")
        c.execute("insert into rst select generate_series(1, 100)")
    r = pgbackrest(env, "--stanza=main", "--type=full", "backup", timeout=600)
    assert r.returncode == 0
    info = json.loads(pgbackrest(env, "--stanza=main", "--output=json", "info").stdout)
    label = info[0]["backup"][-1]["label"]
    # after the last backup: archived before the restore starts
    with leader_conn(cluster) as c:
        c.execute("insert into rst select generate_series(101, 200)")
        c.execute("delete from upg where id between 1 and 10")
        wait_archived(c)
    t0 = time.monotonic()
    # a broken pgbackrest command: step 5 fails with the old data already aside
    r = run_helper(ini, "restore", "run",
                   "--upgrade-pgbackrest", f"pgbackrest --config={lab13['wd']}/absent.conf "
                   "--pg1-path=%d", timeout=900)
    assert r.returncode == 1
    assert re.search(r"step 5/\d+ \(pgbackrest restore \(leader\)\) failed", r.stderr)
    assert "resume with: pgbouncer-helper [-c FILE] restore run --from-step 5" in r.stderr
    t1 = time.monotonic()
    r = run_helper(ini, "restore", "run", "--from-step", "5", "--progress", "200ms",
                   timeout=900)
    assert_restore_progress(r.stderr, leader, [n for n in cluster.names if n != leader])
    lab.record_timing("restore_resumed_steps_5_to_end_wall", time.monotonic() - t1)
    lab.record_timing("restore_total_wall", time.monotonic() - t0)
    assert r.returncode == 0, r.stderr
    assert "restore of scope raddb finished" in r.stderr
    cluster.wait_healthy(120)
    with leader_conn(cluster) as c:
        assert c.execute("select count(*), max(id) from rst").fetchone() == (200, 200)
        assert c.execute("select count(*) from upg").fetchone()[0] == ROWS + 1 - 10
        c.execute("insert into rst values (1000)")
    wait_replicas_have(cluster, "select count(*) from rst", 201)
    for n in cluster.names:
        aside = list((cluster.workdir / n).glob("pg15.before-restore-*"))
        assert len(aside) == 1 and (aside[0] / "PG_VERSION").exists(), aside
    wait_edited_config(cluster)
    # the plans: all archived WAL by default; the explicit choice to stop at the end
    # of a backup set; a point in time
    r = run_helper(ini, "restore", "plan")
    assert r.returncode == 0, r.stderr
    assert "to the latest backup, then every archived WAL (--type default)" in r.stdout
    assert "restore --type=default" in r.stdout and "--target-action" not in r.stdout
    assert len(re.findall(r"^step \d+/10: ", r.stdout, re.M)) == 10
    r = run_helper(ini, "restore", "plan", "--set", label, "--type", "immediate")
    assert r.returncode == 0, r.stderr
    assert f"--set={label} restore --type=immediate --target-action=pause" in r.stdout
    assert "to backup set " + label + ", stopping at its end (--type immediate)" in r.stdout
    r = run_helper(ini, "restore", "plan", "--target-time", "2026-01-02 03:04:05+00")
    assert r.returncode == 0
    assert "restore --type=time '\\''--target=2026-01-02 03:04:05+00'\\''" in r.stdout


# --------------------------------------------------------------------------- scope

def test_wrong_scope_refused_before_anything_stops(lab13, tmp_path):
    """patroni_url serves scope raddb, helper.ini says another: upgrade and restore
    refuse before stopping a member or deleting a key."""
    cluster = lab13["cluster"]
    cluster.wait_healthy(90)
    ini = tmp_path / "wrong.ini"
    ini.write_text(lab13["ini"].read_text().replace(f"scope = {SCOPE}\n", "scope = other\n"))
    # a key under the configured scope: the old helper deleted service/other/ recursively
    cluster.consul.kv_put("service/other/config", '{"ttl":30}')
    try:
        before = cluster.consul.kv_list("service/")
        pids = {n: cluster.member(n).pid for n in cluster.names}
        for args in (["restore", "run"], ["upgrade", "run", "--to-version", "16"],
                     ["restore", "plan"]):
            r = run_helper(ini, *args)
            assert r.returncode == 1, (args, r.stderr)
            assert f"serves scope {SCOPE}, not other (helper.ini scope): refusing" in r.stderr
            assert "stop patroni" not in r.stderr and "DELETE" not in r.stderr + r.stdout
        assert cluster.consul.kv_list("service/").keys() == before.keys()
        assert {n: cluster.member(n).pid for n in cluster.names} == pids
        ok, why = cluster.health()
        assert ok, why
    finally:
        cluster.consul.kv_delete("service/other/", recurse=True)


# --------------------------------------------------------------------------- lock, resume

def ini_with_state_dir(lab13, tmp_path: Path) -> Path:
    """lab13's helper.ini with the state in tmp_path and a patroni_stop that stops
    nothing (so a wrongly accepted run cannot take the lab cluster down)."""
    text = lab13["ini"].read_text().replace(f"state_dir = {lab13['wd']}/state\n",
                                            f"state_dir = {tmp_path}\n")
    text = re.sub(r"^patroni_stop = .*$", "patroni_stop = false", text, flags=re.M)
    ini = tmp_path / "helper.ini"
    ini.write_text(text)
    return ini


def test_second_run_refused_while_another_holds_the_lock(lab13, tmp_path):
    cluster = lab13["cluster"]
    cluster.wait_healthy(90)
    ini = ini_with_state_dir(lab13, tmp_path)
    lock = tmp_path / f"upgrade-{SCOPE}.state.lock"
    pids = {n: cluster.member(n).pid for n in cluster.names}
    with open(lock, "w") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)    # fcntl F_SETLK, as the helper
        t0 = time.monotonic()
        r = run_helper(ini, "upgrade", "run", "--to-version", "16", timeout=60)
        assert time.monotonic() - t0 < 30                 # at once, not after a wait
    assert r.returncode == 1, r.stderr
    assert f"another upgrade of scope {SCOPE} is running: {lock} is locked by pid " \
           f"{os.getpid()}: refusing" in r.stderr
    assert "step 1/" not in r.stderr and "stop patroni" not in r.stderr
    assert not (tmp_path / f"upgrade-{SCOPE}.state").exists()
    assert {n: cluster.member(n).pid for n in cluster.names} == pids


def live_state_lines(cluster: lab.PatroniCluster) -> tuple[list[str], int, list[dict]]:
    """member= lines of a state file for the live cluster, the leader's index."""
    first = cluster.member(cluster.names[0])
    with urllib.request.urlopen(f"{first.api_url}/cluster", timeout=10) as resp:
        live = json.load(resp)["members"]
    lines = [f"member={m['name']} {m['host']} {m['port']} "
             f"{m['api_url'].removesuffix('/patroni')}" for m in live]
    leader = next(i for i, m in enumerate(live) if m["role"] == "leader")
    return lines, leader, live


def test_from_step_refuses_state_members_the_live_cluster_lacks(lab13, tmp_path):
    cluster = lab13["cluster"]
    cluster.wait_healthy(90)
    ini = ini_with_state_dir(lab13, tmp_path)
    first = cluster.member(cluster.names[0])
    lines, leader, live = live_state_lines(cluster)
    # one member renamed: the state file names a member the cluster does not have
    ghost = 1 if leader == 0 else 0
    real = live[ghost]["name"]
    lines[ghost] = lines[ghost].replace(f"member={real} ", "member=ghost ", 1)
    state = tmp_path / f"upgrade-{SCOPE}.state"
    state.write_text(f"kind=upgrade\nscope={SCOPE}\nstatus=failed\nnext_step=2\n"
                     f"leader={leader}\nserver_version=150000\n" + "\n".join(lines) +
                     "\nvar.old_version=15\nvar.new_version=16\n")
    pids = {n: cluster.member(n).pid for n in cluster.names}
    r = run_helper(ini, "upgrade", "run", "--to-version", "16", "--from-step", "2",
                   timeout=120)
    assert r.returncode == 1, r.stderr
    assert f"live member {real} (patroni {first.api_url}/cluster) is not in the state " \
           f"file: refusing to resume from the state file {state}" in r.stderr
    assert "step 2/" not in r.stderr and "stop patroni" not in r.stderr
    assert {n: cluster.member(n).pid for n in cluster.names} == pids
    ok, why = cluster.health()
    assert ok, why


def test_step_killed_at_step_timeout_says_so(lab13, tmp_path):
    """A step still running at step_timeout is killed and the error names the setting;
    the resumed step 11 (pgBackRest) is made slow with a sleeping pgbackrest template."""
    cluster = lab13["cluster"]
    cluster.wait_healthy(90)
    ini = ini_with_state_dir(lab13, tmp_path)
    lines, leader, _ = live_state_lines(cluster)
    state = tmp_path / f"upgrade-{SCOPE}.state"
    state.write_text(f"kind=upgrade\nscope={SCOPE}\nstatus=failed\nnext_step=11\n"
                     f"leader={leader}\nserver_version=150000\n" + "\n".join(lines) +
                     "\nvar.old_version=13\nvar.new_version=15\n")
    t0 = time.monotonic()
    r = run_helper(ini, "upgrade", "run", "--to-version", "15", "--from-step", "11",
                   "--upgrade-step-timeout", "2s", "--upgrade-pgbackrest", "sleep 20; true",
                   timeout=120)
    assert time.monotonic() - t0 < 15, "not killed at the 2 s step_timeout"
    assert r.returncode == 1, r.stderr
    assert re.search(r"pgbackrest stanza-upgrade on \S+: .* did not finish within 2 s: "
                     r"stopped: killed at step_timeout \(\[upgrade\] step_timeout in "
                     r"helper\.ini or --upgrade-step-timeout; 0 = no limit\)", r.stderr), \
        r.stderr
    assert re.search(r"step 11/\d+ \(pgbackrest stanza-upgrade and check \(leader\)\) "
                     r"failed", r.stderr)
    assert "status=failed" in state.read_text()
    ok, why = cluster.health()
    assert ok, why
