"""scripts/fetch-upstream.sh when Debian's suite
moves on: a local file:// apt repository offers a fake next security
revision (1.24.1-1+deb13u3: the real orig tarball, the real debian tarball
plus one more CVE patch) instead of the pinned one, as Debian's mirrors do
once they drop the pinned revision."""

import shutil

import pytest
from pgbc_build import (PIN, cached, debian_tarball, local_mirror,
                        repacked_orig, script, sha256, unified_patch,
                        upstream_file)

NEXT = "1.24.1-1+deb13u3"
NEXT_TARBALL = f"pgbouncer_{NEXT}.debian.tar.xz"
NEXT_CVE = "CVE-2026-6669-Shorten-the-accept-retry-sleep.patch"
POOLER = "src/pooler.c"  # no patch of the real stack touches it


def debian_fix():
    """Debian's fix for the fake CVE-2026-6669 in NEXT."""
    return unified_patch(POOLER, upstream_file(POOLER), [
        ("/* on accept() failure sleep 5 seconds */", "/* on accept() failure sleep 1 second */"),
        ("static struct timeval err_timeout = {5, 0};", "static struct timeval err_timeout = {1, 0};"),
    ])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The source files the fake mirrors offer."""
    d = tmp_path_factory.mktemp("files")
    next_tarball = debian_tarball(d / NEXT_TARBALL, NEXT, [(NEXT_CVE, debian_fix())])
    repacked = d / "repacked"
    repacked.mkdir()
    other = d / "other"
    other.mkdir()
    shutil.copy(cached(PIN["ORIG_TARBALL"]), other / "pgbouncer_1.25.1.orig.tar.gz")
    shutil.copy(next_tarball, other / "pgbouncer_1.25.1-1.debian.tar.xz")
    return {
        "orig": cached(PIN["ORIG_TARBALL"]),
        "pinned": cached(PIN["DEBIAN_TARBALL"]),
        "next": next_tarball,
        "repacked": repacked_orig(repacked / PIN["ORIG_TARBALL"]),
        "other": [other / "pgbouncer_1.25.1.orig.tar.gz", other / "pgbouncer_1.25.1-1.debian.tar.xz"],
    }


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory, files):
    """file:// repositories whose trixie offers: the pinned revision; only
    NEXT; NEXT with a repacked orig; only another upstream version."""
    d = tmp_path_factory.mktemp("mirrors")
    suite = PIN["DEBIAN_SUITE"]
    return {
        "pinned": local_mirror(d / "pinned", suite, [(PIN["DEBIAN_VERSION"], [files["orig"], files["pinned"]])]),
        "next": local_mirror(d / "next", suite, [(NEXT, [files["orig"], files["next"]])]),
        "repacked": local_mirror(d / "repacked", suite, [(NEXT, [files["repacked"], files["next"]])]),
        "other": local_mirror(d / "other", suite, [("1.25.1-1", files["other"])]),
    }


def cache_with(tmp_path, *names):
    d = tmp_path / "cache"
    d.mkdir()
    for name in names:
        shutil.copy(cached(name), d / name)
    return d


def fetch(cache, mirror, **env):
    return script("fetch-upstream.sh", cache, env={"PGBC_DEBIAN_MIRROR": mirror, **env})


def error(r):
    """The one-line message a failing script ends with."""
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


# --- fetch-upstream.sh ------------------------------------------------------

def test_fetch_uses_the_cache_without_asking_apt(tmp_path):
    cache = cache_with(tmp_path, PIN["ORIG_TARBALL"], PIN["DEBIAN_TARBALL"])
    r = fetch(cache, f"file://{tmp_path}/no-such-mirror")
    assert r.returncode == 0, r.stderr
    assert "using cached" in r.stdout


def test_fetch_downloads_the_pinned_revision_when_offered(tmp_path, mirrors):
    cache = tmp_path / "cache"
    r = fetch(cache, mirrors["pinned"])
    assert r.returncode == 0, r.stderr
    for name, sum_ in ((PIN["ORIG_TARBALL"], PIN["ORIG_SHA256"]), (PIN["DEBIAN_TARBALL"], PIN["DEBIAN_SHA256"])):
        assert not (cache / name).is_symlink() and sha256(cache / name) == sum_


def test_fetch_with_only_the_next_revision_offered_says_to_run_update_pin(tmp_path, mirrors):
    cache = tmp_path / "cache"
    r = fetch(cache, mirrors["next"])
    assert error(r) == (
        f"fetch-upstream: pgbouncer {PIN['DEBIAN_VERSION']} is gone from Debian trixie, which now offers {NEXT}: "
        f"found {PIN['ORIG_TARBALL']} in {NEXT} (SHA-256 as pinned), but {PIN['DEBIAN_TARBALL']} only comes "
        f"with {PIN['DEBIAN_VERSION']}; run scripts/update-pin.sh to move the pin to {NEXT}, review its "
        "report and git diff, then rebuild")
    assert sha256(cache / PIN["ORIG_TARBALL"]) == PIN["ORIG_SHA256"]
    assert not (cache / PIN["DEBIAN_TARBALL"]).exists()


def test_fetch_takes_the_orig_from_the_next_revision_when_the_debian_tarball_is_cached(tmp_path, mirrors):
    cache = cache_with(tmp_path, PIN["DEBIAN_TARBALL"])
    r = fetch(cache, mirrors["next"])
    assert r.returncode == 0, r.stderr
    assert f"{PIN['ORIG_TARBALL']} from {NEXT} and the cached {PIN['DEBIAN_TARBALL']} are the pinned files" in r.stdout
    assert sha256(cache / PIN["ORIG_TARBALL"]) == PIN["ORIG_SHA256"]


def test_fetch_refuses_an_orig_that_changed_in_the_next_revision(tmp_path, mirrors, files):
    r = fetch(tmp_path / "cache", mirrors["repacked"])
    assert error(r) == (
        f"fetch-upstream: pgbouncer {PIN['DEBIAN_VERSION']} is gone from Debian trixie, which now offers {NEXT}, "
        f"whose {PIN['ORIG_TARBALL']} has SHA-256 {sha256(files['repacked'])}, not the pinned {PIN['ORIG_SHA256']}: "
        "the orig changed within upstream 1.24.1; compare it with the upstream release before pinning anything")


def test_fetch_with_another_upstream_version_offered_says_to_rebase(tmp_path, mirrors):
    r = fetch(tmp_path / "cache", mirrors["other"])
    assert error(r) == (
        f"fetch-upstream: pgbouncer {PIN['DEBIAN_VERSION']} is gone from Debian trixie, which now offers 1.25.1-1, "
        "another upstream version than 1.24.1: scripts/update-pin.sh cannot follow it; rebase the series onto it "
        '(README.md, "Rebasing the series onto a new upstream")')


def test_fetch_names_a_suite_the_mirror_lacks(tmp_path, mirrors):
    cache = tmp_path / "cache"
    r = fetch(cache, mirrors["next"], PGBC_DEBIAN_SUITE="no-such-suite")
    assert error(r) == (f"fetch-upstream: apt-get update for Debian no-such-suite sources at {mirrors['next']} "
                        f"failed, see {cache}/apt-no-such-suite/update.log")
