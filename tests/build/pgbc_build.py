"""Helpers for the upstream source tests: the pin, the cache the build
filled, patches made against the pinned upstream files, fake Debian source
revisions and a local apt repository offering them."""

import difflib
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
CACHE = Path(os.environ.get("PGBC_CACHE", "/var/cache/pgbouncer-consul"))


def read_pin(path):
    return dict(line.split("=", 1) for line in Path(path).read_text().splitlines()
                if line and not line.startswith("#"))


PIN = read_pin(ROOT / "patches/upstream.pin")


def write_pin(path, **changes):
    """Rewrite the KEY=value lines of a pin copy named in changes."""
    lines = []
    for line in Path(path).read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={changes.pop(key)}" if key in changes else line)
    assert not changes, f"no such keys in {path}: {changes}"
    Path(path).write_text("\n".join(lines) + "\n")


def cached(name):
    """A file of the pinned source in the cache; fail (not skip) without it."""
    p = CACHE / name
    if not p.exists():
        pytest.fail(f"{p} missing: the build fetches it (run make first)")
    return p


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def need_tool(name):
    if shutil.which(name) is None:
        pytest.fail(f"{name} not found: run scripts/install-deps.sh")


def run(argv, env=None, **kw):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=e, **kw)


def script(name, *args, env=None):
    return run(["sh", SCRIPTS / name, *args], env=env)


def upstream_file(rel):
    """The text of pgbouncer-VERSION/REL in the pinned orig tarball."""
    with tarfile.open(cached(PIN["ORIG_TARBALL"])) as t:
        f = t.extractfile(f"pgbouncer-{PIN['UPSTREAM_VERSION']}/{rel}")
        return f.read().decode()


def unified_patch(rel, before, edits):
    """A -p1 patch of REL from the text BEFORE, replacing each old line of
    EDITS (old, new) pairs once."""
    old = before.splitlines(keepends=True)
    new = list(old)
    for a, b in edits:
        i = new.index(a + "\n")
        new[i] = b + "\n"
    diff = difflib.unified_diff(old, new, f"a/{rel}", f"b/{rel}", n=3)
    return "".join(diff)


def apply_text(text, rel, patch):
    """REL's text after PATCH, through patch(1) with zero fuzz."""
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        (work / rel).parent.mkdir(parents=True)
        (work / rel).write_text(text)
        r = run(["patch", "-d", work, "-p1", "--batch", "--fuzz=0"], input=patch)
        assert r.returncode == 0, r.stdout + r.stderr
        return (work / rel).read_text()


def debian_tarball(dest, version, cve_patches=(), drop=()):
    """Write DEST: the pinned debian tarball with CVE_PATCHES ((name, text)
    pairs) added to debian/patches and its series, the patches named in DROP
    removed, and a changelog entry for VERSION on top."""
    work = Path(dest).parent / f".debian-{version}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with tarfile.open(cached(PIN["DEBIAN_TARBALL"])) as t:
        t.extractall(work)
    pdir = work / "debian/patches"
    series = [s for s in (pdir / "series").read_text().splitlines() if s not in drop]
    for name in drop:
        (pdir / name).unlink()
    for name, text in cve_patches:
        (pdir / name).write_text(text)
        series.append(name)
    (pdir / "series").write_text("\n".join(series) + "\n")
    log = work / "debian/changelog"
    ids = ", ".join(re.search(r"CVE-\d{4}-\d+", name).group(0) for name, _ in cve_patches)
    entry = (f"pgbouncer ({version}) {PIN['DEBIAN_SUITE']}; urgency=medium\n\n"
             f"  * Test revision made by pgbouncer-consul's tests: {ids or 'no new CVE'}.\n\n"
             " -- pgbouncer-consul tests <tests@pgbouncer-consul.invalid>  "
             "Tue, 01 Dec 2026 00:00:00 +0000\n\n")
    log.write_text(entry + log.read_text())
    with tarfile.open(dest, "w:xz") as t:
        t.add(work / "debian", arcname="debian")
    shutil.rmtree(work)
    return Path(dest)


def repacked_orig(dest):
    """The pinned orig tarball's content compressed anew: same files, other
    bytes, as a repacked orig would be."""
    data = gzip.decompress(cached(PIN["ORIG_TARBALL"]).read_bytes())
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=1, compresslevel=1) as g:
        g.write(data)
    Path(dest).write_bytes(buf.getvalue())
    return Path(dest)


def _dsc(version, files):
    lines = ["Format: 3.0 (quilt)", "Source: pgbouncer", "Binary: pgbouncer",
             "Architecture: any", f"Version: {version}",
             "Maintainer: pgbouncer-consul tests <tests@pgbouncer-consul.invalid>"]
    for field, algo in (("Checksums-Sha1", "sha1"), ("Checksums-Sha256", "sha256"),
                        ("Files", "md5")):
        lines.append(f"{field}:")
        for f in files:
            data = Path(f).read_bytes()
            lines.append(f" {hashlib.new(algo, data).hexdigest()} {len(data)} {Path(f).name}")
    return "\n".join(lines) + "\n"


def local_mirror(root, suite, revisions):
    """A file:// apt repository at ROOT whose SUITE main offers the source
    package pgbouncer in each (version, [orig, debian tarball]) of
    REVISIONS; returns its URL."""
    need_tool("apt-ftparchive")
    root = Path(root)
    pool = root / "pool/main/p/pgbouncer"
    pool.mkdir(parents=True)
    for version, files in revisions:
        for f in files:
            shutil.copy(f, pool / Path(f).name)
        (pool / f"pgbouncer_{version}.dsc").write_text(_dsc(version, [pool / Path(f).name for f in files]))
    src = root / f"dists/{suite}/main/source"
    src.mkdir(parents=True)
    r = run(["apt-ftparchive", "sources", "pool"], cwd=root)
    assert r.returncode == 0, r.stderr
    (src / "Sources").write_text(r.stdout)
    (src / "Sources.gz").write_bytes(gzip.compress(r.stdout.encode(), mtime=0))
    r = run(["apt-ftparchive", "-o", f"APT::FTPArchive::Release::Suite={suite}",
             "-o", f"APT::FTPArchive::Release::Codename={suite}",
             "-o", "APT::FTPArchive::Release::Components=main",
             "release", f"dists/{suite}"], cwd=root)
    assert r.returncode == 0, r.stderr
    (root / f"dists/{suite}/Release").write_text(r.stdout)
    return f"file://{root}"
