"""scripts/prepare-upstream.sh: the pinned sources are refused unless both
SHA-256 sums match, and every patch of the stack applies with zero fuzz or
stops the build naming the patch and the hunks that failed."""

import shutil

import pytest
from pgbc_build import (PIN, ROOT, cached, debian_tarball, run, script, sha256,
                        unified_patch, upstream_file, write_pin)

FUZZY_FILE = "src/pooler.c"  # no patch of the stack touches it


@pytest.fixture
def sources(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    for name in (PIN["ORIG_TARBALL"], PIN["DEBIAN_TARBALL"]):
        shutil.copy(cached(name), d / name)
    return d


@pytest.fixture
def patches(tmp_path):
    d = tmp_path / "patches"
    shutil.copytree(ROOT / "patches", d)
    return d


def prepare(src, dest, env=None, *extra):
    return script("prepare-upstream.sh", src, dest, *extra, env=env)


def fuzzy_patch():
    """Two hunks for FUZZY_FILE: #1 matches exactly; #2's first context line
    is not in the file, so patch only takes it with fuzz 1."""
    text = unified_patch(FUZZY_FILE, upstream_file(FUZZY_FILE), [
        ("static struct timeval err_timeout = {5, 0};",
         "static struct timeval err_timeout = {6, 0};"),
        ('\t\t\tlog_warning("cleanup_sockets, event_del: %s", strerror(errno));',
         '\t\t\tlog_warning("cleanup_sockets: event_del: %s", strerror(errno));'),
    ])
    lines = text.splitlines(keepends=True)
    hunks = [i for i, line in enumerate(lines) if line.startswith("@@")]
    assert len(hunks) == 2 and lines[hunks[1] + 1].startswith(" ")
    lines[hunks[1] + 1] = " /* a line src/pooler.c does not have */\n"
    return "".join(lines)


def test_prepare_applies_cve_backports_and_series(sources, tmp_path):
    r = prepare(sources, tmp_path / "tree")
    assert r.returncode == 0, r.stderr
    assert "applied 5 CVE backports" in r.stdout
    assert (tmp_path / "tree/include/pgb_plugin.h").exists()
    assert (tmp_path / "tree/src/plugin.c").exists()


def test_real_series_applies_with_zero_fuzz(sources, tmp_path):
    r = prepare(sources, tmp_path / "tree")
    assert r.returncode == 0, r.stderr
    ours = len(list((ROOT / "patches").glob("[0-9][0-9][0-9][0-9]-*.patch")))
    security = len(list((ROOT / "patches").glob("security/[0-9][0-9][0-9][0-9]-*.patch")))
    assert f"applied 5 CVE backports from {PIN['DEBIAN_TARBALL']} with zero fuzz" in r.stdout
    assert f"applied {security} security fixes from patches/security/ with zero fuzz" in r.stdout
    assert f"applied {ours} patches from patches/ with zero fuzz" in r.stdout
    assert not list((tmp_path / "tree").rglob("*.orig")) and not list((tmp_path / "tree").rglob("*.rej"))


def test_prepare_without_series_is_upstream_plus_cves(sources, tmp_path):
    r = prepare(sources, tmp_path / "tree", None, "--no-series")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "tree/src/plugin.c").exists()


def test_prepare_refuses_wrong_checksum(sources, tmp_path):
    with open(sources / PIN["ORIG_TARBALL"], "ab") as f:
        f.write(b"x")
    r = prepare(sources, tmp_path / "tree")
    assert r.returncode != 0
    assert f"wrong SHA-256 for {sources / PIN['ORIG_TARBALL']}" in r.stderr
    assert PIN["ORIG_SHA256"] in r.stderr
    assert not (tmp_path / "tree").exists()


def test_prepare_refuses_missing_file(sources, tmp_path):
    (sources / PIN["DEBIAN_TARBALL"]).unlink()
    r = prepare(sources, tmp_path / "tree")
    assert r.returncode != 0 and f"missing {sources / PIN['DEBIAN_TARBALL']}" in r.stderr


def test_prepare_names_patch_and_hunk_that_do_not_apply(sources, patches, tmp_path):
    bad = patches / "0009-Break-things.patch"
    bad.write_text("--- a/src/main.c\n+++ b/src/main.c\n@@ -1,3 +1,3 @@\n-no such line\n+x\n no\n such\n")
    r = prepare(sources, tmp_path / "tree", {"PGBC_PATCHES_DIR": str(patches)})
    assert r.returncode != 0
    assert ("patch 0009-Break-things.patch does not apply to pgbouncer 1.24.1 with zero fuzz: "
            "src/main.c hunk #1 FAILED at 1") in r.stderr
    assert not (tmp_path / "tree").exists()


def test_prepare_names_missing_file_to_patch(sources, patches, tmp_path):
    (patches / "0009-Patch-nothing.patch").write_text(
        "--- a/src/no_such.c\n+++ b/src/no_such.c\n@@ -1,1 +1,1 @@\n-x\n+y\n")
    r = prepare(sources, tmp_path / "tree", {"PGBC_PATCHES_DIR": str(patches)})
    assert r.returncode != 0
    assert "patch 0009-Patch-nothing.patch does not apply to pgbouncer 1.24.1 with zero fuzz: " \
           "src/no_such.c: no such file to patch" in r.stderr


def test_prepare_refuses_patch_that_changes_nothing(sources, patches, tmp_path):
    (patches / "0009-Empty.patch").write_text("")
    r = prepare(sources, tmp_path / "tree", {"PGBC_PATCHES_DIR": str(patches)})
    assert r.returncode != 0
    assert "patch 0009-Empty.patch does not apply to pgbouncer 1.24.1 with zero fuzz: it changes no file" in r.stderr


def test_fuzzy_patch_applies_with_patch_default_fuzz(sources, tmp_path):
    # the fixture below is only worth refusing if patch's default takes it
    r = prepare(sources, tmp_path / "tree", None, "--no-series")
    assert r.returncode == 0, r.stderr
    r = run(["patch", "-d", tmp_path / "tree", "-p1", "--batch", "--dry-run"], input=fuzzy_patch())
    assert r.returncode == 0, r.stdout
    assert "Hunk #2 succeeded at" in r.stdout and "with fuzz 1" in r.stdout


@pytest.mark.parametrize("layer", ["debian", "security", "series"])
def test_prepare_refuses_patch_that_needs_fuzz(sources, patches, tmp_path, layer):
    if layer == "debian":
        name = "CVE-2026-0001-Fuzzy-context.patch"
        debian_tarball(sources / PIN["DEBIAN_TARBALL"], "1.24.1-1+deb13u2",
                       [(name, fuzzy_patch())])
        write_pin(patches / "upstream.pin", DEBIAN_SHA256=sha256(sources / PIN["DEBIAN_TARBALL"]))
        label = f"debian/patches/{name} ({PIN['DEBIAN_TARBALL']})"
    elif layer == "security":
        (patches / "security").mkdir(exist_ok=True)
        label = "security/0001-CVE-2026-0001-Fuzzy-context.patch"
        (patches / label).write_text(fuzzy_patch())
    else:
        label = "0009-Fuzzy-context.patch"
        (patches / label).write_text(fuzzy_patch())
    r = prepare(sources, tmp_path / "tree", {"PGBC_PATCHES_DIR": str(patches)})
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"prepare-upstream: patch {label} does not apply to pgbouncer 1.24.1 "
                           f"with zero fuzz: {FUZZY_FILE} hunk #2 FAILED at "), r.stderr
    assert "hunk #1" not in last
    assert not (tmp_path / "tree").exists()


def test_prepare_accepts_a_patch_at_an_offset_and_notes_it(sources, patches, tmp_path):
    # every context line matches verbatim, five lines below where the
    # header says: what an earlier patch touching the same file causes
    text = unified_patch(FUZZY_FILE, upstream_file(FUZZY_FILE), [
        ("static struct timeval err_timeout = {5, 0};", "static struct timeval err_timeout = {6, 0};")])
    assert "@@ -53,7 +53,7 @@" in text
    (patches / "0009-Moved-context.patch").write_text(text.replace("@@ -53,7 +53,7 @@", "@@ -48,7 +48,7 @@"))
    r = prepare(sources, tmp_path / "tree", {"PGBC_PATCHES_DIR": str(patches)})
    assert r.returncode == 0, r.stderr
    assert (f"prepare-upstream: note: 0009-Moved-context.patch applied at an offset: "
            f"{FUZZY_FILE} hunk #1 at 53 (offset 5 lines)") in r.stdout
    assert "err_timeout = {6, 0};" in (tmp_path / "tree" / FUZZY_FILE).read_text()


def test_prepare_security_only_stops_before_the_series(sources, patches, tmp_path):
    (patches / "security").mkdir(exist_ok=True)
    (patches / "security/0001-CVE-2026-0002-Retry-accept-sooner.patch").write_text(unified_patch(
        FUZZY_FILE, upstream_file(FUZZY_FILE), [
            ("static struct timeval err_timeout = {5, 0};", "static struct timeval err_timeout = {2, 0};")]))
    r = prepare(sources, tmp_path / "tree", {"PGBC_PATCHES_DIR": str(patches)}, "--security-only")
    assert r.returncode == 0, r.stderr
    assert "err_timeout = {2, 0};" in (tmp_path / "tree" / FUZZY_FILE).read_text()
    assert not (tmp_path / "tree/src/plugin.c").exists()
