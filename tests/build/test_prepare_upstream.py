"""scripts/prepare-upstream.sh: the pinned sources are refused unless both
SHA-256 sums match, and a patch that does not apply stops with its name."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREPARE = ROOT / "scripts/prepare-upstream.sh"
PIN = dict(line.split("=", 1) for line in (ROOT / "patches/upstream.pin").read_text().splitlines()
           if line and not line.startswith("#"))
CACHE = Path(os.environ.get("PGBC_CACHE", "/var/cache/pgbouncer-consul"))


@pytest.fixture
def sources(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    for name in (PIN["ORIG_TARBALL"], PIN["DEBIAN_TARBALL"]):
        if not (CACHE / name).exists():
            pytest.fail(f"{CACHE / name} missing: the build fetches it (run make first)")
        shutil.copy(CACHE / name, d / name)
    return d


def prepare(src, dest, env=None, *extra):
    e = dict(os.environ, **(env or {}))
    return subprocess.run(["sh", str(PREPARE), str(src), str(dest), *extra],
                          capture_output=True, text=True, env=e)


def test_prepare_applies_cve_backports_and_series(sources, tmp_path):
    r = prepare(sources, tmp_path / "tree")
    assert r.returncode == 0, r.stderr
    assert "applied 5 CVE backports" in r.stdout
    assert (tmp_path / "tree/include/pgb_plugin.h").exists()
    assert (tmp_path / "tree/src/plugin.c").exists()


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


def test_prepare_names_patch_that_does_not_apply(sources, tmp_path):
    patches = tmp_path / "patches"
    shutil.copytree(ROOT / "patches", patches)
    bad = patches / "0009-Break-things.patch"
    bad.write_text("--- a/src/main.c\n+++ b/src/main.c\n@@ -1,3 +1,3 @@\n-no such line\n+x\n no\n such\n")
    r = prepare(sources, tmp_path / "tree", {"PGBC_PATCHES_DIR": str(patches)})
    assert r.returncode != 0
    assert "patch 0009-Break-things.patch does not apply to pgbouncer 1.24.1" in r.stderr
    assert not (tmp_path / "tree").exists()
