"""templates/multi-dc/ kept true to Consul 1.8.7, Patroni's settings, the fork's
keys and what pgbouncer-helper installs: every HCL file passes `consul validate`
once its placeholders are filled, the files agree with one another (datacenters,
joins, ports, tags), and the prepared-query JSON of each site is what
`pgbouncer-helper prepared-queries` makes of that site's helper.ini, checked in a
real Consul dev agent of that datacenter in both directions.  Then the four
agent templates run as one layout on loopback (a global and a dc1 server
WAN-joined, a global and a dc1 client agent): a key written through the global
client is read through the dc1 client with dc=global, and dc1's writer query
answers there.  About 7 s.

    /usr/bin/python3 -m pytest -v tests/integration/test_templates.py   (as root)

Environment: PGBC_CACHE / PGBC_CONSUL (the consul binary, see lab.py),
PGBC_HELPER (the pgbouncer-helper binary, default: the build tree's).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

import fork
import lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

TEMPLATES = fork.ROOT / "templates" / "multi-dc"
HELPER = os.environ.get("PGBC_HELPER", str(fork.ROOT / "helper/pgbouncer-helper"))
HCL_FILES = ("global-server.hcl", "site-server.hcl", "global-client.hcl", "site-client.hcl")
SITES = {"dc1": "dc2", "dc2": "dc1"}        # site -> the site it fails over to
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


# --------------------------------------------------------------------------- reading

def text(name: str) -> str:
    return (TEMPLATES / name).read_text()


def hcl_string(name: str, key: str) -> str:
    """A top-level `key = "value"` of one of our HCL files (consul validate has
    checked the syntax; these files keep one assignment per line)."""
    m = re.search(rf'^{key}\s*=\s*"([^"]*)"', text(name), re.M)
    assert m, f"{name}: no top-level {key} = \"...\""
    return m.group(1)


def hcl_list(name: str, key: str) -> list[str]:
    m = re.search(rf"^{key}\s*=\s*\[(.*?)\]", text(name), re.M | re.S)
    assert m, f"{name}: no top-level {key} = [...]"
    return re.findall(r'"([^"]*)"', m.group(1))


def hcl_port(name: str, which: str, default: int) -> int:
    """ports { which = N } of the file, or Consul's default."""
    block = re.search(r"^ports\s*\{(.*?)^\}", text(name), re.M | re.S)
    if block:
        m = re.search(rf"^\s*{which}\s*=\s*(-?\d+)", block.group(1), re.M)
        if m:
            return int(m.group(1))
    return default


def ini(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",), comment_prefixes=(";", "#"),
                                   interpolation=None)
    cp.read_string(text(name), source=name)
    return cp


def port_of(url: str) -> int:
    m = re.fullmatch(r"https?://127\.0\.0\.1:(\d+)/?", url)
    assert m, f"not a local agent URL: {url}"
    return int(m.group(1))


def conninfo(value: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in value.split())


# --------------------------------------------------------------------------- consul validate

@pytest.fixture(scope="module")
def gossip_key(consul_bin) -> str:
    r = subprocess.run([consul_bin, "keygen"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("name", HCL_FILES)
def test_hcl_validates_once_filled(tmp_path, consul_bin, gossip_key, name):
    raw = text(name)
    assert set(PLACEHOLDER.findall(raw)) == {"@ENCRYPT_KEY@"}, \
        f"{name}: placeholders the README does not list"
    path = tmp_path / name
    # left as shipped, consul refuses it, naming the key
    path.write_text(raw)
    r = subprocess.run([consul_bin, "validate", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "encrypt" in r.stdout + r.stderr, r.stdout + r.stderr
    path.write_text(raw.replace("@ENCRYPT_KEY@", gossip_key))
    r = subprocess.run([consul_bin, "validate", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "Configuration is valid!" in r.stdout, r.stdout + r.stderr


# --------------------------------------------------------------------------- one layout

def test_consul_layout_hangs_together():
    # every agent names global the primary datacenter (ACLs)
    for name in HCL_FILES:
        assert hcl_string(name, "primary_datacenter") == "global", name
    assert hcl_string("global-server.hcl", "datacenter") == "global"
    assert hcl_string("global-client.hcl", "datacenter") == "global"
    assert hcl_string("site-server.hcl", "datacenter") == "dc1"
    assert hcl_string("site-client.hcl", "datacenter") == "dc1"
    assert re.search(r"^server\s*=\s*true", text("global-server.hcl"), re.M)
    assert re.search(r"^server\s*=\s*true", text("site-server.hcl"), re.M)
    for name in ("global-client.hcl", "site-client.hcl"):
        assert not re.search(r"^server\s*=", text(name), re.M), name
    global_servers = hcl_list("global-server.hcl", "retry_join")
    dc1_servers = hcl_list("site-server.hcl", "retry_join")
    assert len(global_servers) == 3 and len(dc1_servers) == 3
    # WAN: the global servers join the site servers and the other way round
    assert set(dc1_servers) <= set(hcl_list("global-server.hcl", "retry_join_wan"))
    assert hcl_list("site-server.hcl", "retry_join_wan") == global_servers
    # clients join the servers of their own datacenter
    assert hcl_list("global-client.hcl", "retry_join") == global_servers
    assert hcl_list("site-client.hcl", "retry_join") == dc1_servers
    # one database host runs both clients: no port and no data_dir shared
    g = {w: hcl_port("global-client.hcl", w, d) for w, d in
         (("http", 8500), ("dns", 8600), ("serf_lan", 8301))}
    s = {w: hcl_port("site-client.hcl", w, d) for w, d in
         (("http", 8500), ("dns", 8600), ("serf_lan", 8301))}
    assert not ({p for p in g.values() if p > 0} & {p for p in s.values() if p > 0}), (g, s)
    assert hcl_string("global-client.hcl", "data_dir") != hcl_string("site-client.hcl", "data_dir")


def test_patroni_yml_uses_global_agent_and_tags_its_site():
    p = yaml.safe_load(text("patroni-dc1.yml"))
    assert p["consul"]["register_service"] is False
    assert p["tags"] == {"dc": "dc1"}
    host, port = p["consul"]["host"].rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) == hcl_port("global-client.hcl", "http", 8500)
    assert "dc" not in p["consul"]      # the agent's own datacenter: global
    # the single-datacenter template apart from consul: and tags:
    single = yaml.safe_load((fork.ROOT / "templates" / "patroni.yml").read_text())
    for key in set(single) | set(p):
        if key not in ("consul", "tags"):
            assert p.get(key) == single.get(key), f"patroni-dc1.yml {key}: differs from patroni.yml"


def test_pgbouncer_fragment_reads_global_through_the_site_agent():
    cp = ini("pgbouncer-dc1.ini")
    p = yaml.safe_load(text("patroni-dc1.yml"))
    assert cp["consul"]["datacenter"] == hcl_string("global-server.hcl", "datacenter")
    assert port_of(cp["consul"]["url"]) == hcl_port("site-client.hcl", "http", 8500)
    entries = {name: conninfo(v) for name, v in cp["databases"].items()}
    assert {e["patroni_scope"] for e in entries.values()} == {p["scope"]}
    preferring = [e for e in entries.values() if "patroni_prefer" in e]
    assert len(preferring) == 1 and preferring[0]["patroni_role"] == "replica"
    key, value = preferring[0]["patroni_prefer"].split(":", 1)
    assert p["tags"][key] == value
    assert any(e.get("patroni_role", "primary") == "primary" for e in entries.values())


# --------------------------------------------------------------------------- prepared queries

def run_helper(ini_path: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([HELPER, "-c", str(ini_path), *args], capture_output=True, text=True,
                       timeout=60)
    lab.log(f"helper {' '.join(args)} -> rc={r.returncode}\n{r.stderr.strip()}")
    return r


def contains(have, want, where: str = "") -> None:
    """Every key of want is in have with the same value (have may say more:
    Consul adds ID, indexes, Template, ...)."""
    if isinstance(want, dict):
        assert isinstance(have, dict), f"{where}: {have!r} is not an object"
        for k, v in want.items():
            assert k in have, f"{where}.{k}: missing"
            contains(have[k], v, f"{where}.{k}")
    else:
        assert have == want, f"{where}: {have!r} != template's {want!r}"


@pytest.mark.parametrize("site", sorted(SITES))
def test_prepared_queries_json_is_what_the_helper_installs(tmp_path, consul_bin, site):
    queries = json.loads(text(f"prepared-queries-{site}.json"))
    helper_ini = ini(f"helper-{site}.ini")
    scope = helper_ini["helper"]["scope"]
    assert helper_ini["helper"]["datacenters"].split() == [SITES[site]]
    assert {q["Name"] for q in queries} == {f"{scope}-{k}" for k in ("writer", "query", "any")}
    assert port_of(helper_ini["consul"]["url"]) == hcl_port("site-client.hcl", "http", 8500)
    consul = lab.Consul(tmp_path / "consul", binary=consul_bin, datacenter=site,
                        node=f"tmpl-{site}")
    try:
        consul.start()
        assert consul.api("GET", "/v1/agent/self")["Config"]["Datacenter"] == site
        ini_path = tmp_path / "helper.ini"
        ini_path.write_text(re.sub(r"^url = \S+", f"url = {consul.url}",
                                   text(f"helper-{site}.ini"), count=1, flags=re.M))
        # the template's queries, installed as they are (Consul takes them),
        # are everything the helper wants: it changes nothing
        for q in queries:
            consul.api("POST", "/v1/query", q)
        before = {q["Name"]: q["ModifyIndex"] for q in consul.api("GET", "/v1/query")}
        r = run_helper(ini_path, "prepared-queries")
        assert r.returncode == 0 and "nothing changed" in r.stderr, r.stderr
        assert {q["Name"]: q["ModifyIndex"] for q in consul.api("GET", "/v1/query")} == before
        # and what the helper creates from scratch says what the template says
        for q in consul.api("GET", "/v1/query"):
            consul.api("DELETE", f"/v1/query/{q['ID']}")
        r = run_helper(ini_path, "prepared-queries")
        assert r.returncode == 0 and r.stderr.count(" created ") == 3, r.stderr
        made = {q["Name"]: q for q in consul.api("GET", "/v1/query")}
        assert set(made) == {q["Name"] for q in queries}
        for q in queries:
            contains(made[q["Name"]], q, q["Name"])
    finally:
        consul.stop()
        if not os.environ.get("PGBC_KEEP"):
            shutil.rmtree(tmp_path / "consul", ignore_errors=True)


# --------------------------------------------------------------------------- the layout, running

class TemplateAgent(lab.Consul):
    """A Consul agent run from one of the HCL templates: its datacenter, role,
    ACL and gossip settings come from the file; the lab's flags only move it to
    free loopback ports and a private data_dir, and the template's server names
    become the loopback addresses of the agents started for them."""

    def __init__(self, workdir: Path, template: str, key: str, **kw):
        super().__init__(workdir, datacenter=hcl_string(template, "datacenter"), **kw)
        self.template, self.key = template, key
        self.names: dict[str, tuple[str, str]] = {}     # hostname -> (LAN, WAN) address

    def _cmd(self) -> list[str]:
        cmd = super()._cmd()
        i = cmd.index("-datacenter")
        del cmd[i:i + 2]            # the template's datacenter, not a flag's
        filled = text(self.template).replace("@ENCRYPT_KEY@", self.key)
        for key, which in (("retry_join", 0), ("retry_join_wan", 1)):
            def swap(m, which=which):
                return re.sub(r'"([^"]+)"', lambda n: '"%s"' % self.names[n.group(1)][which],
                              m.group(0))
            filled = re.sub(rf"^{key}\s*=\s*\[.*?\]", swap, filled, flags=re.M | re.S)
        path = self.workdir / "template.hcl"
        path.write_text(filled)
        # the lab's own: join at once, elect fast, stop without a leave (it
        # waits seconds for the gossip), and a replication token for dc1
        lab_hcl = self.workdir / "lab-template.hcl"
        lab_hcl.write_text('retry_interval = "1s"\nretry_interval_wan = "1s"\n'
                           'performance {\n  raft_multiplier = 1\n}\n'
                           'leave_on_terminate = false\n'
                           f'acl {{\n  tokens {{\n    replication = "{self.token}"\n  }}\n}}\n')
        return cmd + ["-config-file", str(path), "-config-file", str(lab_hcl)]


def test_templates_make_the_layout(tmp_path, consul_bin, gossip_key):
    """A global server, a dc1 server, a global client (Patroni's) and a dc1
    client (the pooler's and the helper's), each from its template: WAN-joined,
    Patroni's leader key written through the global client is read through the
    dc1 client with dc=global (what [consul] datacenter = global asks for) and
    not without, and the helper's writer query answers through the dc1 client."""
    token = "a3f6d1f8-5c1e-4e39-9c1b-6f0c2d9e7b41"
    mk = dict(binary=consul_bin, acl_master_token=token)
    gs = TemplateAgent(tmp_path / "gs", "global-server.hcl", gossip_key, node="global-1",
                       role="server", bootstrap_expect=1, **mk)
    ss = TemplateAgent(tmp_path / "ss", "site-server.hcl", gossip_key, node="dc1-1",
                       role="server", bootstrap_expect=1, **mk)
    gc = TemplateAgent(tmp_path / "gc", "global-client.hcl", gossip_key, node="db1",
                       role="client", **mk)
    sc = TemplateAgent(tmp_path / "sc", "site-client.hcl", gossip_key, node="db1",
                       role="client", **mk)
    names = {}
    for n in hcl_list("global-server.hcl", "retry_join"):
        names[n] = (gs.serf_lan_address, f"127.0.0.1:{gs.ports['serf_wan']}")
    for n in hcl_list("site-server.hcl", "retry_join"):
        names[n] = (ss.serf_lan_address, f"127.0.0.1:{ss.ports['serf_wan']}")
    for n in hcl_list("global-server.hcl", "retry_join_wan"):
        names.setdefault(n, ("127.0.0.1:1", "127.0.0.1:1"))     # dc2's: not started
    agents = [gs, ss, gc, sc]
    try:
        for a in agents:
            a.names = names
        for a in (gs, ss):          # the servers elect their leaders side by side
            a.launch()
        for a in agents:
            a.start(60)
        assert [a.api("GET", "/v1/agent/self")["Config"]["Datacenter"] for a in agents] == \
            ["global", "dc1", "global", "dc1"]
        # one host name in both datacenters: the database host's two agents
        assert {n["Node"] for n in gs.api("GET", "/v1/catalog/nodes")} == {"global-1", "db1"}
        assert {n["Node"] for n in ss.api("GET", "/v1/catalog/nodes")} == {"dc1-1", "db1"}
        lab.wait_until(lambda: set(gs.api("GET", "/v1/catalog/datacenters")) == {"global", "dc1"},
                       60, 0.2, "global and dc1 WAN-joined")
        # Patroni writes through its global agent ...
        gc.api("PUT", "/v1/kv/service/raddb/leader", "db1")
        # ... and the pooler's dc1 agent finds it in global only
        st, _, _ = sc.request("GET", "/v1/kv/service/raddb/leader")
        assert st == 404
        st, _, raw = sc.request("GET", "/v1/kv/service/raddb/leader?dc=global&raw")
        assert (st, raw) == (200, b"db1")
        # the helper registers into dc1 and installs dc1's queries through the dc1 agent
        sc.api("PUT", "/v1/agent/service/register",
               {"ID": "pgbc-helper:raddb:db1:writer", "Name": "raddb", "Tags": ["primary"],
                "Address": "127.0.0.1", "Port": 5432})
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        ini_path = tmp_path / "helper.ini"
        ini_path.write_text(re.sub(r"^url = \S+", f"url = {sc.url}", text("helper-dc1.ini"),
                                   count=1, flags=re.M))
        r = run_helper(ini_path, "prepared-queries", "--consul-token-file", str(token_file))
        assert r.returncode == 0 and r.stderr.count(" created ") == 3, r.stderr
        answer = sc.api("GET", "/v1/query/raddb-writer/execute")
        assert answer["Datacenter"] == "dc1"
        assert [(n["Node"]["Node"], n["Service"]["Port"]) for n in answer["Nodes"]] == \
            [("db1", 5432)]
        assert answer["DNS"]["TTL"] == "5s"
        assert gs.api("GET", "/v1/query") == []        # queries belong to dc1
    finally:
        # each stops by its PID, bounded; side by side, as a leave takes seconds
        with ThreadPoolExecutor(len(agents)) as pool:
            list(pool.map(lambda a: a.stop(), agents))
