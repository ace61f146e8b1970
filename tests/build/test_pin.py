"""scripts/fetch-upstream.sh and scripts/update-pin.sh when Debian's suite
moves on: a local file:// apt repository offers a fake next security
revision (1.24.1-1+deb13u3: the real orig tarball, the real debian tarball
plus one more CVE patch) instead of the pinned one, as Debian's mirrors do
once they drop the pinned revision."""

import shutil

import pytest
from pgbc_build import (PIN, ROOT, apply_text, cached, debian_tarball,
                        local_mirror, read_pin, repacked_orig, run, script,
                        sha256, unified_patch, upstream_file)

NEXT = "1.24.1-1+deb13u3"
NEXT_TARBALL = f"pgbouncer_{NEXT}.debian.tar.xz"
NEXT_CVE = "CVE-2026-6669-Shorten-the-accept-retry-sleep.patch"
POOLER = "src/pooler.c"  # no patch of the real stack touches it
UTIL = "src/util.c"  # nor this one


def debian_fix():
    """Debian's fix for the fake CVE-2026-6669 in NEXT."""
    return unified_patch(POOLER, upstream_file(POOLER), [
        ("/* on accept() failure sleep 5 seconds */", "/* on accept() failure sleep 1 second */"),
        ("static struct timeval err_timeout = {5, 0};", "static struct timeval err_timeout = {1, 0};"),
    ])


def our_security_patches():
    """Ours, made on the pinned revision: 0001 fixes the CVE Debian fixes in
    NEXT, differently; 0002 (another CVE) has a context line Debian's fix
    rewrites; 0003 touches another file."""
    base = upstream_file(POOLER)
    p1 = unified_patch(POOLER, base, [
        ("static struct timeval err_timeout = {5, 0};", "static struct timeval err_timeout = {2, 0};")])
    p2 = unified_patch(POOLER, apply_text(base, POOLER, p1), [
        ("static bool listen_addr_empty = true;", "static bool listen_addr_empty = true;\t/* until parsed */")])
    p3 = unified_patch(UTIL, upstream_file(UTIL), [("\tif (!dstlen)", "\tif (dstlen == 0)")])
    return {
        "0001-CVE-2026-6669-Retry-accept-sooner.patch": p1,
        "0002-CVE-2026-19888-Say-when-listen_addr-is-known.patch": p2,
        "0003-CVE-2026-7777-Compare-the-hex-buffer-length.patch": p3,
    }


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


# --- update-pin.sh ----------------------------------------------------------

def update_pin(tmp_path, mirror, security):
    """update-pin.sh on copies of patches/ (with SECURITY patches) and of the
    cache; returns (result, patches copy)."""
    patches = tmp_path / "patches"
    shutil.copytree(ROOT / "patches", patches)
    shutil.rmtree(patches / "security", ignore_errors=True)
    (patches / "security").mkdir()
    for name, text in security.items():
        (patches / "security" / name).write_text(text)
    cache = cache_with(tmp_path, PIN["ORIG_TARBALL"], PIN["DEBIAN_TARBALL"])
    r = script("update-pin.sh", cache, env={
        "PGBC_PATCHES_DIR": str(patches), "PGBC_PIN_FILE": str(patches / "upstream.pin"),
        "PGBC_DEBIAN_MIRROR": mirror})
    return r, patches, cache


@pytest.fixture(scope="module")
def updated(tmp_path_factory, mirrors):
    return update_pin(tmp_path_factory.mktemp("update"), mirrors["next"], our_security_patches())


def test_our_security_patches_apply_on_the_pinned_revision(tmp_path):
    # so that what update-pin reports below comes from NEXT alone
    patches = tmp_path / "patches"
    shutil.copytree(ROOT / "patches", patches)
    shutil.rmtree(patches / "security", ignore_errors=True)
    (patches / "security").mkdir()
    for name, text in our_security_patches().items():
        (patches / "security" / name).write_text(text)
    cache = cache_with(tmp_path, PIN["ORIG_TARBALL"], PIN["DEBIAN_TARBALL"])
    r = script("prepare-upstream.sh", cache, tmp_path / "tree", env={"PGBC_PATCHES_DIR": str(patches)})
    assert r.returncode == 0, r.stderr
    assert "applied 3 security fixes" in r.stdout


def test_update_pin_moves_the_pin_copy_to_the_offered_revision(updated, files):
    r, patches, _ = updated
    assert r.returncode == 2, r.stdout + r.stderr
    assert read_pin(patches / "upstream.pin") == dict(
        PIN, DEBIAN_VERSION=NEXT, DEBIAN_TARBALL=NEXT_TARBALL, DEBIAN_SHA256=sha256(files["next"]))
    assert read_pin(ROOT / "patches/upstream.pin") == PIN
    assert (f"update-pin: moved {patches}/upstream.pin from {PIN['DEBIAN_VERSION']} to {NEXT} "
            f"({NEXT_TARBALL}, SHA-256 {sha256(files['next'])}); {PIN['ORIG_TARBALL']} is unchanged") in r.stdout


def test_update_pin_lists_the_cve_patches_new_in_the_offered_revision(updated):
    r = updated[0]
    assert f"update-pin: pgbouncer {NEXT} carries 6 CVE patches:" in r.stdout
    assert f"update-pin: new since {PIN['DEBIAN_VERSION']}: CVE-2026-6669\n" in r.stdout


def test_update_pin_reports_ours_for_a_cve_debian_now_carries_as_redundant(updated):
    assert (f"update-pin: redundant: security/0001-CVE-2026-6669-Retry-accept-sooner.patch: Debian {NEXT} "
            f"carries CVE-2026-6669 ({NEXT_CVE}); drop ours\n") in updated[0].stdout


def test_update_pin_reports_ours_that_no_longer_applies_as_conflict(updated):
    name = "security/0002-CVE-2026-19888-Say-when-listen_addr-is-known.patch"
    assert (f"update-pin: conflict: {name} no longer applies on top of Debian {NEXT}'s CVE patches: "
            f"patch {name} does not apply to pgbouncer 1.24.1 with zero fuzz: {POOLER} hunk #1 FAILED at 49\n"
            ) in updated[0].stdout


def test_the_conflict_is_one_that_patch_default_fuzz_would_hide(tmp_path):
    # without --fuzz=0, 0002 would land on Debian's rewritten context
    tree = tmp_path / "tree"
    (tree / POOLER).parent.mkdir(parents=True)
    (tree / POOLER).write_text(apply_text(upstream_file(POOLER), POOLER, debian_fix()))
    ours = our_security_patches()["0002-CVE-2026-19888-Say-when-listen_addr-is-known.patch"]
    r = run(["patch", "-d", tree, "-p1", "--batch", "--dry-run"], input=ours)
    assert r.returncode == 0 and "with fuzz 2" in r.stdout, r.stdout


def test_update_pin_keeps_ours_that_still_applies(updated):
    r = updated[0]
    assert (f"update-pin: ok: security/0003-CVE-2026-7777-Compare-the-hex-buffer-length.patch applies on top "
            f"of Debian {NEXT}'s CVE patches\n") in r.stdout
    assert f"update-pin: ok: the patches/ series applies on top of {NEXT} with 1 of our security fixes\n" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("update-pin: to do: drop the redundant patches")


def test_update_pin_refuses_a_changed_orig_and_leaves_the_pin(tmp_path, mirrors, files):
    r, patches, _ = update_pin(tmp_path, mirrors["repacked"], {})
    assert error(r) == (
        f"update-pin: the orig tarball changed: {PIN['ORIG_TARBALL']} in pgbouncer {NEXT} has SHA-256 "
        f"{sha256(files['repacked'])}, the pin says {PIN['ORIG_SHA256']}; pin left as it was: check the new "
        "orig against the upstream release before pinning it by hand")
    assert read_pin(patches / "upstream.pin") == PIN


def test_update_pin_refuses_another_upstream_version(tmp_path, mirrors):
    r, patches, _ = update_pin(tmp_path, mirrors["other"], {})
    assert error(r) == (
        "update-pin: Debian trixie offers pgbouncer 1.25.1-1, another upstream version than 1.24.1: a new pin "
        'there is a rebase (README.md, "Rebasing the series onto a new upstream")')
    assert read_pin(patches / "upstream.pin") == PIN


def test_update_pin_with_the_pinned_revision_offered_keeps_the_pin(tmp_path, mirrors):
    r, patches, _ = update_pin(tmp_path, mirrors["pinned"], {})
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"already pins {PIN['DEBIAN_VERSION']}, the revision Debian trixie offers" in r.stdout
    assert r.stdout.endswith("update-pin: nothing to do\n")
    assert read_pin(patches / "upstream.pin") == PIN


def test_fetch_and_prepare_build_the_revision_update_pin_moved_to(tmp_path, mirrors):
    r, patches, cache = update_pin(tmp_path, mirrors["next"], {})
    assert r.returncode == 0, r.stdout + r.stderr
    env = {"PGBC_PATCHES_DIR": str(patches)}
    r = fetch(cache, mirrors["next"], **env)
    assert r.returncode == 0 and "using cached" in r.stdout, r.stderr
    r = script("prepare-upstream.sh", cache, tmp_path / "tree", env=env)
    assert r.returncode == 0, r.stderr
    assert f"applied 6 CVE backports from {NEXT_TARBALL} with zero fuzz" in r.stdout
    assert "err_timeout = {1, 0};" in (tmp_path / "tree" / POOLER).read_text()
