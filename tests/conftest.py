"""Rules for every pytest stage of test.sh (tests/build, fork, security,
integration).  PgBouncer's own suite (tests/upstream) runs outside this
tree and is not affected: it legitimately skips tests (sudo, IPv6) and is
judged by comparing builds instead.

PGBC_NO_SKIP=1 (test.sh sets it): a skipped test or module is a failure.
A stage whose tests all skip (e.g. the lab when not run as root) must not
print "ok"; run by hand without the variable, skips stay skips."""

import os

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
