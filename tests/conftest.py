"""Rules for every pytest stage of test.sh (tests/build, fork, security,
integration).  PgBouncer's own suite (tests/upstream) runs outside this
tree and is not affected: it legitimately skips tests (sudo, IPv6) and is
judged by comparing builds instead.

PGBC_NO_SKIP=1 (test.sh sets it): a skipped test or module is a failure.
A stage whose tests all skip (e.g. the lab when not run as root) must not
print "ok"; run by hand without the variable, skips stay skips.

PGBC_SANITIZER_LOGS=DIR (test.sh sets it for the --enable-sanitizers
build, with ASAN_OPTIONS/UBSAN_OPTIONS log_path under DIR): a report file
that appears in DIR fails the test during which it appeared, and one that
appears later (a process stopped at session end) fails the session."""

import os
from pathlib import Path

import pytest

NO_SKIP = os.environ.get("PGBC_NO_SKIP") == "1"
WHY = "a skip fails under test.sh (PGBC_NO_SKIP=1)"


def _reason(longrepr):
    # a skip's longrepr is (file, line, "Skipped: reason")
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if NO_SKIP and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"{WHY}: {_reason(rep.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if NO_SKIP and rep.skipped:
        rep.outcome = "failed"
        rep.longrepr = f"{WHY}: {_reason(rep.longrepr)}"


SANITIZER_LOGS = os.environ.get("PGBC_SANITIZER_LOGS")


def _reports():
    return set(Path(SANITIZER_LOGS).glob("*")) if SANITIZER_LOGS else set()


def _report_text(paths):
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[:20000]}" for p in sorted(paths))


@pytest.fixture(autouse=True)
def _no_sanitizer_report():
    """Set up before, torn down after, every other fixture of the test: the
    processes a test started are stopped (and have written any leak report)
    by the time this looks."""
    before = _reports()
    yield
    new = _reports() - before
    if new:
        pytest.fail("sanitizer report(s):\n" + _report_text(new), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    if not SANITIZER_LOGS:
        return
    reports = _reports()
    if reports:
        print("\nsanitizer reports in " + SANITIZER_LOGS + ":\n" + _report_text(reports))
        session.exitstatus = 1
