"""A pooler host in the bookworm root, shared by the install tests: the
README's install steps (Debian's pgbouncer, then ours over it with the
README's own apt-get line) and pgbouncer.service's ExecStart run as systemd
runs it (as its User=, with a NOTIFY_SOCKET listened on here)."""

import shlex
import signal
import socket
import subprocess
import time

from conftest import ROOT, VERSION
from pgproc import stop_pid

INI = "/etc/pgbouncer/pgbouncer.ini"
USERLIST = "/etc/pgbouncer/userlist.txt"
README = ROOT / "README.md"


def installed(c, pkg):
    r = c.run("dpkg-query", "-W", "-f=${Status} ${Version}", pkg, check=False)
    return r.stdout if r.returncode == 0 else ""


def install_stock(c):
    """bookworm's pgbouncer, as on a host that runs Debian's."""
    c.apt("install", "pgbouncer")
    assert "1.18" in c.run("pgbouncer", "--version").stdout
    # systemd-tmpfiles would make the postgres runtime directory at boot
    c.run("install", "-d", "-o", "postgres", "-g", "postgres", "-m", "2775", "/run/postgresql")


# the README's line (Install on a pooler host), for the version built
INSTALL = ("apt-get install ./build-deb/pgbouncer-consul_{v}_amd64.deb "
           "./build-deb/pgbouncer-helper_{v}_amd64.deb")


def install_ours(c, debs, version):
    """Our packages over whatever is installed, by the README's command run
    where ./build-deb holds them (-y: stdin is not a terminal, and apt asks
    before it removes Debian's pgbouncer).  Returns apt's output."""
    cmd = INSTALL.format(v=version)
    if version == VERSION:
        assert "\n    " + cmd + "\n" in README.read_text(), \
            f"README's install line is not the one the packages need:\n    {cmd}"
    d = c.file("/root/build-deb")
    d.mkdir(exist_ok=True)
    for f in debs.glob("pgbouncer-*_*.deb"):
        if "dbgsym" not in f.name:
            (d / f.name).write_bytes(f.read_bytes())
    argv = shlex.split(cmd)
    return c.run(argv[0], "-y", "-q", *argv[1:], cwd="/root").stdout


def unit(c, name):
    """The [Service] keys of a unit file (last value wins, as systemd)."""
    keys, section = {}, None
    for line in c.file(f"/lib/systemd/system/{name}").read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys[k] = v
    return keys


class Service:
    """pgbouncer.service's ExecStart run as systemd runs it: as its User=,
    with NOTIFY_SOCKET, main PID = the process started."""

    def __init__(self, c):
        self.c = c
        self.u = unit(c, "pgbouncer.service")
        d = c.file("/run/pgbc-notify")
        d.mkdir(exist_ok=True)
        d.chmod(0o777)
        path = d / "notify.sock"
        if path.exists():
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        path.chmod(0o777)
        self.messages = []
        user = self.u["User"]
        self.proc = subprocess.Popen(
            ["chroot", f"--userspec={user}:{user}", str(c.path), "env", "-i",
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=/run/pgbc-notify/notify.sock"]
            + shlex.split(self.u["ExecStart"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait_for(self, what, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(what in m for m in self.messages):
                return True
            if self.proc.poll() is not None:
                break
            self.sock.settimeout(0.2)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return False

    def reload(self):
        cmd = self.u["ExecReload"].replace("$MAINPID", str(self.proc.pid))
        self.c.run(*shlex.split(cmd))

    def stop(self):
        sig = getattr(signal, self.u.get("KillSignal", "SIGTERM"))
        rc = stop_pid(self.proc, sig)
        self.sock.close()
        return rc

    def log(self):
        return self.c.file("/var/log/postgresql/pgbouncer.log").read_text(errors="replace")[-3000:]
