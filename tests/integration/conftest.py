"""Fixtures for the integration lab: a real Consul 1.8.7 dev agent and a real
Patroni / PostgreSQL 15 cluster on 127.0.0.1 (see tests/integration/lab.py).

Run as root (Patroni/Postgres are started as the `postgres` user):
    /usr/bin/python3 -m pytest -v tests/integration -m integration

Environment:
    PGBC_CACHE   cache dir for the Consul .deb/binary (default /var/cache/pgbouncer-consul)
    PGBC_CONSUL  use this consul binary instead of fetching one
    PGBC_KEEP    if set, keep the lab work dirs under /tmp after the run (for logs)
    PGBC_PATRONI 3 (default: bookworm's 3.0.2), 4 (trixie's 4.0.7) or 4.1 (sid's
                 4.1.5), fetched by scripts/fetch-patroni.sh into $PGBC_CACHE
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402


def _sigterm(signum, frame):
    # Default SIGTERM would end the interpreter without fixture teardown or
    # atexit: turn it into KeyboardInterrupt so every lab process gets stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    import signal
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm)
    config.addinivalue_line(
        "markers", "integration: needs the real Consul/Patroni/PostgreSQL lab (run as root)")
    # keep `@pytest.mark.timeout` harmless if python3-pytest-timeout is missing
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(pytest.mark.integration)


def _require_lab():
    if os.geteuid() != 0:
        pytest.skip("the integration lab must run as root (it starts Patroni as postgres)")
    missing = [p for p in (str(lab.PG_BIN / "postgres"),) if not os.path.exists(p)]
    if missing:
        pytest.fail(f"lab prerequisites missing: {missing}; run ./test.sh, which installs them")
    try:
        lab.patroni_install()           # the one PGBC_PATRONI asks for
    except RuntimeError as e:
        pytest.fail(str(e))


def _workdir(prefix: str) -> Path:
    return lab.make_workdir(prefix)


def _cleanup(path: Path, failed: bool) -> None:
    if os.environ.get("PGBC_KEEP") or failed:
        lab.log(f"keeping {path} (logs)")
        return
    shutil.rmtree(path, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item.session.__dict__["_lab_failed"] = True


def _failed(request) -> bool:
    return bool(request.session.__dict__.get("_lab_failed"))


@pytest.fixture(scope="session")
def lab_cache() -> Path:
    d = Path(os.environ.get("PGBC_CACHE") or lab.DEFAULT_CACHE)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def consul_bin(lab_cache) -> str:
    """Path of the Consul 1.8.7 binary (fetched once into lab_cache)."""
    try:
        return lab.consul_binary(lab_cache)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"cannot get consul: {e}")


@pytest.fixture(scope="module")
def consul(consul_bin, request):
    """A Consul dev agent shared by the module (the one `patroni_cluster` uses)."""
    _require_lab()
    wd = _workdir("pgbc-lab-consul-")
    c = lab.Consul(wd, binary=consul_bin)
    try:
        c.start()
        lab.record_timing("consul_start", c.start_time)
        yield c
    finally:
        c.stop()
        _cleanup(wd, _failed(request))


@pytest.fixture
def fresh_consul(consul_bin, request):
    """A private Consul dev agent for one test."""
    _require_lab()
    wd = _workdir("pgbc-lab-consul-")
    c = lab.Consul(wd, binary=consul_bin)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        _cleanup(wd, _failed(request))


@pytest.fixture
def acl_consul(consul_bin, request):
    """A private Consul dev agent with ACLs on (default deny); .token = master token."""
    _require_lab()
    wd = _workdir("pgbc-lab-consul-acl-")
    c = lab.Consul(wd, acl_master_token=str(uuid.uuid4()), binary=consul_bin)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        _cleanup(wd, _failed(request))


def _patroni_cluster(name, consul, request, **kw):
    """The body of the Patroni cluster fixtures: started on `consul`, its
    start time recorded as <name>_cluster_start, stopped and cleaned up."""
    _require_lab()
    wd = _workdir(f"pgbc-lab-{name.replace('_', '-')}-")
    cluster = lab.PatroniCluster(wd, consul, **kw)
    try:
        cluster.start()
        lab.record_timing("patroni_version", cluster.patroni_version)
        lab.record_timing(f"{name}_cluster_start", cluster.start_time)
        yield cluster
    finally:
        cluster.stop()
        _cleanup(wd, _failed(request))


@pytest.fixture(scope="module")
def patroni_cluster(consul, request):
    """3-member Patroni cluster (scope raddb, namespace service) on `consul`,
    started and healthy (leader + 2 streaming replicas); stopped after the module.
    A module's PATRONI_TAGS ({member: {tag: value}}) go into the members' patroni.yml."""
    yield from _patroni_cluster("patroni", consul, request,
                                tags=getattr(request.module, "PATRONI_TAGS", None))


@pytest.fixture(scope="module")
def consul_dc(consul_bin, request):
    """A real Consul datacenter shared by the module: three server agents
    and the client agents `patroni` (Patroni's) and `fork` (the fork's)."""
    _require_lab()
    wd = _workdir("pgbc-lab-dc-")
    dc = lab.ConsulCluster(wd, binary=consul_bin, clients=("patroni", "fork"))
    try:
        dc.start()
        lab.record_timing("consul_dc_start", dc.start_time)
        yield dc
    finally:
        dc.stop()
        _cleanup(wd, _failed(request))


@pytest.fixture(scope="module")
def dc_patroni_cluster(consul_dc, request):
    """patroni_cluster's 3-member cluster, talking to consul_dc's `patroni`
    client agent."""
    yield from _patroni_cluster("dc_patroni", consul_dc.client("patroni"), request)


@pytest.fixture(scope="module")
def consul_federation(consul_bin, request):
    """Consul datacenters global, dc1 and dc2 (one server each), WAN-joined,
    with the client agent `fork` in dc1 and, for each Patroni member, one in
    global (Patroni's) and one in its site (lab.FEDERATION_SITES: the agent
    the helper registers it with);
    .wan_relay breaks the WAN link to global's server (lab.ConsulFederation)."""
    _require_lab()
    wd = _workdir("pgbc-lab-fed-")
    # as in production, every host talks to client agents of its own: a
    # database host to one of global (Patroni) and one of its site (the
    # helper), a pooler host to one of its site
    clients: dict[str, list[str]] = {"global": list(lab.FEDERATION_SITES), "dc1": ["fork"]}
    for member, site in lab.FEDERATION_SITES.items():
        clients.setdefault(site, []).append(member)
    fed = lab.ConsulFederation(wd, binary=consul_bin, clients=clients)
    try:
        fed.start()
        lab.record_timing("consul_federation_start", fed.start_time)
        lab.record_timing("consul_federation_wan_join", fed.federation_time)
        yield fed
    finally:
        fed.stop()
        _cleanup(wd, _failed(request))


@pytest.fixture(scope="module")
def global_patroni_cluster(consul_federation, request):
    """patroni_cluster's 3-member cluster with its DCS in consul_federation's
    `global` datacenter (each member talks to a global client agent of its
    own, so its sessions hang on that agent's node), each member tagged
    `dc: <its site>`, register_service off (the helper registers the
    members in their sites)."""
    fed = consul_federation
    yield from _patroni_cluster("global_patroni", fed.server("global"), request,
                                member_consul={m: fed.client("global", m).url
                                               for m in lab.FEDERATION_SITES},
                                register_service=False,
                                tags={m: {"dc": site}
                                      for m, site in lab.FEDERATION_SITES.items()})


def pytest_terminal_summary(terminalreporter):
    if lab.TIMINGS:
        terminalreporter.section("lab timings")
        for k, v in lab.TIMINGS.items():
            terminalreporter.write_line(f"{k:45s} {v:8.3f} s" if isinstance(v, float)
                                        else f"{k:45s} {v}")
        out = os.environ.get("PGBC_TIMINGS_FILE")
        if out:
            import json
            with open(out, "a") as f:
                f.write(json.dumps(lab.TIMINGS) + "\n")
