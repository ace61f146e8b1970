"""consul_redirect.so against Consul's HTTPS API: the agent's certificate is
verified against ca_file, and a certificate it does not trust is refused
(the entry keeps its address and SHOW CONSUL says why)."""

from __future__ import annotations

import json

import pytest

import lab
from fork import Bouncer, db_line

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180, method="signal")]


@pytest.fixture(scope="module")
def tls_consul():
    d = lab.make_workdir("pgbc-tls-")
    tls = lab.make_tls_files(d / "tls")
    other_ca = lab.make_tls_files(d / "other").ca      # a CA that did not sign the agent's
    ca_pem, cert, key = tls.ca, tls.server_cert, tls.server_key
    https = lab.free_port()
    c = lab.Consul(d / "consul", extra_hcl=(
        f'ports {{ https = {https} }}\n'
        f'cert_file = "{cert}"\nkey_file = "{key}"\nca_file = "{ca_pem}"\n'
        'verify_incoming = false\n'))
    c.start()
    lab.chown_tree(d)
    # a leader and its member record, as the lab's Patroni writes them
    patroni = lab.patroni_install()
    c.kv_put("service/tlsscope/members/a", json.dumps(
        {"conn_url": "postgres://127.0.0.1:5999/postgres", "api_url": "http://127.0.0.1:8999/patroni",
         "state": "running", "role": patroni.primary_role, "version": patroni.version}))
    body = c.api("PUT", "/v1/session/create", {"Name": "tlsscope-a", "TTL": "300s"})
    assert c.kv_put("service/tlsscope/leader", "a", acquire=body["ID"])
    yield c, f"https://127.0.0.1:{https}", ca_pem, other_ca
    c.stop()


def test_https_with_ca_file_follows(tls_consul, tmp_path):
    consul, url, ca, _ = tls_consul
    b = Bouncer(lab.make_workdir("pgbc-bouncer-"), consul, {"tdb": db_line("tlsscope")},
                consul_settings={"url": url, "ca_file": str(ca)}).start()
    try:
        row = b.wait_row("tdb", lambda r: r["state"] == "following", 15)
        assert row["member"] == "a" and int(row["port"]) == 5999
    finally:
        b.stop()


def test_https_untrusted_certificate_refused(tls_consul, tmp_path):
    consul, url, _, other = tls_consul
    b = Bouncer(lab.make_workdir("pgbc-bouncer-"), consul, {"tdb": db_line("tlsscope")},
                consul_settings={"url": url, "ca_file": str(other)}).start()
    try:
        row = b.wait_row("tdb", lambda r: r["state"] == "consul_unreachable", 15)
        assert "certificate" in (row["last_error"] or "").lower()
        assert row["member"] is None or row["member"] == ""
        assert int(row["port"]) == 1    # still the ini's starting point
    finally:
        b.stop()
