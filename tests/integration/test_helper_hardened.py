"""pgbouncer-helper against a hardened Patroni REST API and a Consul agent
that wants client certificates (issue 12, point 12).

One 2-member Patroni cluster (module scope) whose REST API asks basic auth of
unsafe calls (restapi.authentication) and speaks https with verify_client
required (a client certificate for every call), and a Consul dev agent with an
https port that verifies incoming certificates (verify_incoming_https).  The
tests first show that the hardened parts refuse a call without credentials,
then that the helper gets through with the patroni_* / [consul] settings and
fails with an error naming what is missing without them.

    /usr/bin/python3 -m pytest -v tests/integration/test_helper_hardened.py   (as root)

PGBC_PATRONI chooses Patroni 3 (3.0.2), 4 (4.0.7) or 4.1 (4.1.5), as for
test_helper.py.
"""

from __future__ import annotations

import http.server
import os
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import lab
from test_helper import HELPER, SCOPE, cleanup, run_helper, write_ini

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

API_USER = "patroni-admin"
API_PASSWORD = "api-pass-7f3e9a"


@pytest.fixture(scope="module", autouse=True)
def _binary():
    if not os.access(HELPER, os.X_OK):
        pytest.fail(f"{HELPER} missing: build pgbouncer-helper first")


@pytest.fixture(scope="module")
def tls(request) -> lab.TlsFiles:
    d = lab.make_workdir("pgbc-hardened-tls-")
    yield lab.make_tls_files(d)
    cleanup(d, request)


@pytest.fixture(scope="module")
def hardened(consul, tls, request):
    wd = lab.make_workdir("pgbc-hardened-patroni-")
    # no Patroni service in Consul: its check would need a client certificate
    c = lab.PatroniCluster(wd, consul, scope=SCOPE, members=2, register_service=False,
                           restapi_auth=(API_USER, API_PASSWORD), restapi_tls=tls)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        cleanup(wd, request)


@pytest.fixture(scope="module")
def mtls_consul(consul_bin, tls, request):
    """A dev agent with an https port that wants a client certificate signed by tls.ca."""
    d = lab.make_workdir("pgbc-hardened-consul-")
    https = lab.free_port()
    c = lab.Consul(d, binary=consul_bin, extra_hcl=(
        f'ports {{ https = {https} }}\n'
        f'cert_file = "{tls.server_cert}"\nkey_file = "{tls.server_key}"\n'
        f'ca_file = "{tls.ca}"\nverify_incoming_https = true\n'))
    c.start()
    try:
        yield c, f"https://127.0.0.1:{https}"
    finally:
        c.stop()
        cleanup(d, request)


@pytest.fixture
def password_file(tmp_path) -> Path:
    p = tmp_path / "patroni.pass"
    p.write_text(API_PASSWORD + "\n")
    p.chmod(0o600)
    return p


def hardened_ini(tmp_path: Path, consul: lab.Consul, cluster: lab.PatroniCluster,
                 tls: lab.TlsFiles, name: str = "h.ini", **keys: str) -> Path:
    """helper.ini for the hardened cluster; keys given as "" are left out."""
    full = {"patroni_url": cluster.member(cluster.leader() or cluster.names[0]).api_url,
            "patroni_ca_file": str(tls.ca), "patroni_cert_file": str(tls.client_cert),
            "patroni_key_file": str(tls.client_key)}
    full.update(keys)
    return write_ini(tmp_path / name, consul, **{k: v for k, v in full.items() if v != ""})


def paused(cluster: lab.PatroniCluster) -> bool:
    """Maintenance mode as /cluster shows it (what the helper waits for)."""
    view = cluster.cluster_view()
    assert view is not None
    return bool(view.get("pause"))


def no_secret(r) -> None:
    assert API_PASSWORD not in r.stderr and API_PASSWORD not in r.stdout


# --------------------------------------------------------------------------- the lab refuses

def test_hardened_patroni_refuses_calls_without_credentials(hardened, tls):
    url = hardened.member(hardened.names[0]).api_url
    assert url.startswith("https://")
    # a client certificate but no basic auth: the unsafe call is refused
    st, _ = lab.http_json("PATCH", url + "/config", {"pause": True},
                          context=tls.client_context())
    assert st == 401
    assert not paused(hardened)
    # no client certificate: not even a GET gets through the handshake
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        lab.http_json("GET", url + "/patroni", context=tls.client_context(cert=False))
    # with both, the lab's own call works
    st, body = hardened.rest(hardened.names[0], "/patroni")
    assert st == 200 and body["patroni"]["scope"] == SCOPE


# --------------------------------------------------------------------------- patroni

def test_maintenance_pause_resume_with_credentials(tmp_path, consul, hardened, tls,
                                                   password_file):
    ini = hardened_ini(tmp_path, consul, hardened, tls, patroni_username=API_USER,
                       patroni_password_file=str(password_file))
    try:
        r = run_helper("maintenance", "pause", ini=ini)
        no_secret(r)
        assert r.returncode == 0 and "paused" in r.stderr
        assert paused(hardened)
    finally:
        r = run_helper("maintenance", "resume", ini=ini)
    no_secret(r)
    assert r.returncode == 0 and "resumed" in r.stderr
    assert not paused(hardened)


def test_maintenance_without_basic_auth_names_the_401(tmp_path, consul, hardened, tls):
    ini = hardened_ini(tmp_path, consul, hardened, tls)
    r = run_helper("maintenance", "pause", ini=ini)
    assert r.returncode == 1
    assert "PATCH" in r.stderr and "/config" in r.stderr
    assert "HTTP 401" in r.stderr and "set patroni_username and patroni_password_file" in r.stderr
    assert not paused(hardened)


def test_maintenance_wrong_password_names_the_user_not_the_password(tmp_path, consul, hardened,
                                                                   tls):
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-password\n")
    ini = hardened_ini(tmp_path, consul, hardened, tls, patroni_username=API_USER,
                       patroni_password_file=str(wrong))
    r = run_helper("maintenance", "pause", ini=ini)
    assert r.returncode == 1
    assert f'HTTP 401: it refused patroni_username "{API_USER}"' in r.stderr
    assert "not-the-password" not in r.stderr
    assert not paused(hardened)


def test_no_client_certificate_names_the_tls_settings(tmp_path, consul, hardened, tls,
                                                     password_file):
    ini = hardened_ini(tmp_path, consul, hardened, tls, patroni_cert_file="",
                       patroni_key_file="", patroni_username=API_USER,
                       patroni_password_file=str(password_file))
    for args in (("maintenance", "pause"), ("topology",)):
        r = run_helper(*args, ini=ini)
        no_secret(r)
        assert r.returncode == 1, args
        assert "TLS: check patroni_ca_file, patroni_cert_file, patroni_key_file" in r.stderr
    assert not paused(hardened)
    # and without the CA the server's certificate is not trusted
    ini = hardened_ini(tmp_path, consul, hardened, tls, name="noca.ini", patroni_ca_file="")
    r = run_helper("topology", ini=ini)
    assert r.returncode == 1 and "TLS: check patroni_ca_file" in r.stderr


class AuthRecorder:
    """A plain-http listener in front of the hardened Patroni: forwards each
    request (method, path, body, Authorization) over https with the lab's
    client certificate and records (method, path, carried Authorization)."""

    def __init__(self, upstream: str, context: ssl.SSLContext) -> None:
        self.requests: list[tuple[str, str, bool]] = []
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def relay(self):
                auth = self.headers.get("Authorization")
                rec.requests.append((self.command, self.path, auth is not None))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                hdrs = {"Content-Type": "application/json"} if body else {}
                if auth:
                    hdrs["Authorization"] = auth
                req = urllib.request.Request(upstream + self.path, data=body, headers=hdrs,
                                             method=self.command)
                try:
                    with opener.open(req, timeout=10) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", lab.free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_basic_auth_only_with_the_calls_patroni_protects(tmp_path, consul, hardened, tls,
                                                          password_file):
    """The password goes with PATCH /config, never with a GET (GETs may go to
    api_urls read from the DCS)."""
    leader = hardened.wait_for_leader()
    rec = AuthRecorder(hardened.member(leader).api_url, tls.client_context())
    try:
        ini = write_ini(tmp_path / "h.ini", consul, patroni_url=rec.url,
                        patroni_username=API_USER, patroni_password_file=str(password_file))
        try:
            r = run_helper("maintenance", "pause", ini=ini)
            assert r.returncode == 0, r.stderr
            assert paused(hardened)
        finally:
            r = run_helper("maintenance", "resume", ini=ini)
        assert r.returncode == 0, r.stderr
        assert run_helper("topology", ini=ini).returncode == 0
    finally:
        rec.close()
    assert rec.requests.count(("PATCH", "/config", True)) == 2, rec.requests
    gets = [q for q in rec.requests if q[0] == "GET"]
    assert {q[1] for q in gets} >= {"/cluster", "/patroni"}, gets
    assert not any(q[2] for q in gets), gets
    assert not paused(hardened)


def test_discovery_gets_with_client_certificate(tmp_path, consul, hardened, tls):
    """topology (GET /cluster, /patroni) and register's identity call: GETs need
    only the certificate, not basic auth."""
    hardened.wait_healthy(timeout=60)
    leader = hardened.wait_for_leader()
    ini = hardened_ini(tmp_path, consul, hardened, tls, patroni_url=hardened.member(leader).api_url)
    r = run_helper("topology", ini=ini)
    assert r.returncode == 0, r.stderr
    assert f"leader:         {leader}" in r.stdout
    # restore's discovery: scope check on patroni_url, /cluster, every member's /patroni
    state = tmp_path / "state"
    state.mkdir()
    with ini.open("a") as f:
        f.write(f"\n[upgrade]\nstate_dir = {state}\n")
    r = run_helper("restore", "plan", ini=ini)
    assert r.returncode == 0, r.stderr
    assert all(f"[{n}]" in r.stdout for n in hardened.names), r.stdout
    try:
        r = run_helper("register", "--once", ini=ini)
        assert r.returncode == 0, r.stderr
        ours = sorted(k for k in consul.services() if k.startswith("pgbc-helper:"))
        assert ours == sorted([f"pgbc-helper:{SCOPE}:{leader}:writer",
                               f"pgbc-helper:{SCOPE}:{leader}:any"])
    finally:
        for k in [k for k in consul.services() if k.startswith("pgbc-helper:")]:
            consul.api("PUT", f"/v1/agent/service/deregister/{k}")


def test_bad_patroni_tls_and_auth_settings_refused(tmp_path, consul, hardened, tls, request):
    url = hardened.member(hardened.names[0]).api_url
    # a key file postgres cannot read (root's, 0600), in a directory it can
    wd = lab.make_workdir("pgbc-hardened-key-")
    try:
        key = wd / "root-only.key"
        key.write_bytes(tls.client_key.read_bytes())
        os.chown(key, 0, 0)
        key.chmod(0o600)
        ini = write_ini(wd / "key.ini", consul, patroni_url=url,
                        patroni_cert_file=str(tls.client_cert), patroni_key_file=str(key))
        r = run_helper("topology", ini=ini, as_postgres=True)
        assert r.returncode == 2
        assert f'patroni_key_file: "{key}": cannot open: Permission denied' in r.stderr
    finally:
        cleanup(wd, request)
    # a missing CA file
    ini = write_ini(tmp_path / "ca.ini", consul, patroni_url=url,
                    patroni_ca_file=str(tmp_path / "nope.pem"))
    r = run_helper("topology", ini=ini)
    assert r.returncode == 2 and "patroni_ca_file: " in r.stderr and "nope.pem" in r.stderr
    # a key file that is no key: curl's refusal names the TLS settings
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    ini = write_ini(tmp_path / "junk.ini", consul, patroni_url=url,
                    patroni_ca_file=str(tls.ca), patroni_cert_file=str(tls.client_cert),
                    patroni_key_file=str(junk))
    r = run_helper("topology", ini=ini)
    assert r.returncode == 1 and "TLS: check patroni_ca_file" in r.stderr
    # a user without a password file, and an empty password file
    ini = write_ini(tmp_path / "user.ini", consul, patroni_url=url, patroni_username=API_USER)
    r = run_helper("maintenance", "pause", ini=ini)
    assert r.returncode == 2
    assert "patroni_username: set without patroni_password_file" in r.stderr
    empty = tmp_path / "empty.pass"
    empty.write_text("")
    ini = write_ini(tmp_path / "empty.ini", consul, patroni_url=url, patroni_username=API_USER,
                    patroni_password_file=str(empty))
    r = run_helper("maintenance", "pause", ini=ini)
    assert r.returncode == 2 and "patroni_password_file: " in r.stderr and "is empty" in r.stderr
    # there is no option that takes the password itself (ps would show it)
    ini = hardened_ini(tmp_path, consul, hardened, tls, name="nopass.ini")
    r = run_helper("maintenance", "pause", "--patroni-password", API_PASSWORD, ini=ini)
    no_secret(r)
    assert r.returncode == 2 and "unknown option --patroni-password" in r.stderr
    assert not paused(hardened)


# --------------------------------------------------------------------------- consul

def consul_ini(tmp_path: Path, name: str, url: str, **consul_keys: str) -> Path:
    text = f"[consul]\nurl = {url}\n" + "".join(f"{k} = {v}\n" for k, v in consul_keys.items())
    text += f"\n[helper]\nscope = {SCOPE}\ndatacenters = dc1\n"
    p = tmp_path / name
    p.write_text(text)
    return p


def test_consul_client_certificate(tmp_path, mtls_consul, tls):
    agent, url = mtls_consul
    query = "/v1/query"
    # the agent really wants a certificate
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        lab.http_json("GET", url + query, context=tls.client_context(cert=False))
    st, _ = lab.http_json("GET", url + query, context=tls.client_context())
    assert st == 200

    ini = consul_ini(tmp_path, "ca-only.ini", url, ca_file=str(tls.ca))
    r = run_helper("prepared-queries", ini=ini)
    assert r.returncode == 1
    assert "TLS: check [consul] ca_file, cert_file, key_file" in r.stderr
    assert agent.api("GET", "/v1/query") == []

    ini = consul_ini(tmp_path, "full.ini", url, ca_file=str(tls.ca),
                     cert_file=str(tls.client_cert), key_file=str(tls.client_key))
    r = run_helper("prepared-queries", ini=ini)
    assert r.returncode == 0, r.stderr
    assert {q["Name"] for q in agent.api("GET", "/v1/query")} == \
        {f"{SCOPE}-writer", f"{SCOPE}-query", f"{SCOPE}-any"}


def test_consul_tls_environment_as_consul_cli_reads_it(tmp_path, mtls_consul, tls):
    """CONSUL_CACERT / CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY fill unset settings;
    helper.ini's own wins."""
    agent, url = mtls_consul
    env = {"CONSUL_HTTP_ADDR": url, "CONSUL_CACERT": str(tls.ca),
           "CONSUL_CLIENT_CERT": str(tls.client_cert), "CONSUL_CLIENT_KEY": str(tls.client_key)}
    bare = tmp_path / "bare.ini"
    bare.write_text(f"[helper]\nscope = {SCOPE}\ndatacenters = dc1\n")
    r = run_helper("prepared-queries", ini=bare, env=env)
    assert r.returncode == 0, r.stderr
    # an ini key_file wins over CONSUL_CLIENT_KEY: a missing one is refused by name
    ini = consul_ini(tmp_path, "key.ini", url, key_file=str(tmp_path / "missing.key"))
    r = run_helper("prepared-queries", ini=ini, env=env)
    assert r.returncode == 2 and "key_file: " in r.stderr and "missing.key" in r.stderr
