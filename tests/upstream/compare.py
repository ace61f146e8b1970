"""Compare JUnit results of PgBouncer's own suite between builds.

--summary FILE            prints "N passed, N failed, N skipped"
--lost BASELINE FILE...   prints the pytest node ids that passed in BASELINE
                          but not in one of the FILEs, one per line (each
                          once)
BASELINE[,RERUN] FILE[,RERUN]...
                          fails unless every test that passed in BASELINE
                          also passed in each FILE (the fork must pass what
                          an unpatched build of the same sources passes)

Some upstream tests race under load, so a test that passed in the baseline
and failed in FILE is run again alone on BOTH builds, the same way
(RERUN files: same command, same tests).  It is lost, and the comparison
fails, when the baseline passes it again and FILE does not (or either
rerun is missing).  When the unpatched build also fails it run again, it
is flaky in this setting whatever the build, and is listed, not counted.
When both pass it run again, the fork's failure did not repeat: listed,
not counted.  Without RERUN files every lost test counts.  A module that
did not import (a collection error) in any file fails the comparison.
"""
import os
import sys
import xml.etree.ElementTree as ET


def results(path):
    out = {}
    if not path or not os.path.exists(path):
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        if not case.get("classname") and "error" in tags:
            # a module that did not import: its tests are missing from
            # every count, so the file is no result (see collection_errors)
            out[name] = "collection error"
        elif "skipped" in tags:
            out[name] = "skipped"
        elif tags & {"failure", "error"}:
            out[name] = "failed"
        else:
            out[name] = "passed"
    return out


def node_id(name):
    """test.test_auth::test_message -> test/test_auth.py::test_message"""
    module, _, test = name.partition("::")
    return module.replace(".", "/") + ".py::" + test


def lost(base, other):
    return sorted(n for n, v in base.items() if v == "passed" and other.get(n) != "passed")


def collection_errors(path, res):
    bad = sorted(n.partition("::")[2] for n, v in res.items() if v == "collection error")
    for name in bad:
        print(f"compare: {path}: {name} did not import (collection error)")
    return bool(bad)


def summary(res):
    count = {k: sum(1 for v in res.values() if v == k) for k in ("passed", "failed", "skipped")}
    return f"{count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped"


def judge(name, other, base_again, other_again, have_rerun):
    """(counts as lost?, why) for one test that passed in the baseline only."""
    seen = other.get(name, "missing")
    if not have_rerun:
        return True, f"passed in the baseline, not here: {name} ({seen})"
    b, o = base_again.get(name, "missing"), other_again.get(name, "missing")
    if b == "missing" or o == "missing":
        return True, f"passed in the baseline, not here: {name} ({seen}); no rerun result (baseline {b}, here {o})"
    if b != "passed":
        return False, f"{name}: {seen} here, and {b} on the unpatched build too when run again alone: flaky in this setting, not counted"
    if o != "passed":
        return True, f"passed in the baseline, not here: {name} ({seen}, and {o} again alone, where the unpatched build passed)"
    return False, f"{name}: {seen} in the full run, passed on both builds when run again alone: not counted"


def main(argv):
    if argv[:1] == ["--summary"]:
        print(summary(results(argv[1])))
        return 0
    if argv[:1] == ["--lost"]:
        base = results(argv[1])
        names = sorted({n for path in argv[2:] for n in lost(base, results(path))})
        for name in names:
            print(node_id(name))
        return 0
    base_path, _, base_rerun = argv[0].partition(",")
    base = results(base_path)
    if not base:
        print(f"compare: no test results in {base_path}")
        return 1
    base_again = results(base_rerun)
    status = 1 if collection_errors(base_path, base) or collection_errors(base_rerun, base_again) else 0
    for arg in argv[1:]:
        path, _, rerun = arg.partition(",")
        other = results(path)
        print(f"compare: {path}: {summary(other)}; baseline {summary(base)}")
        have_rerun = bool(rerun and base_rerun)
        again = results(rerun) if have_rerun else {}
        if collection_errors(path, other) or collection_errors(rerun, again):
            status = 1
        for name in lost(base, other):
            counted, why = judge(name, other, base_again, again, have_rerun)
            print(f"compare:   {why}")
            if counted:
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
