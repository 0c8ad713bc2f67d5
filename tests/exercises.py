"""
The classroom kit: the core pieces a course assigns are marked in the source,

    # --- exercise NAME (solution below) ---
    ...the solution...
    # --- end exercise ---

and this script turns the repository into a student copy, and proves that every exercise
is caught by its tests (docs/exercises.md lists them).

    python tests/exercises.py list                  # the exercises, where they are
    python tests/exercises.py make DIR              # a student copy, every exercise blank
    python tests/exercises.py make DIR --only NAME  # ... with one exercise blank
    python tests/exercises.py check                 # prove the kit (CI runs this)

A blank exercise is the lines between its markers replaced by one
`raise NotImplementedError(...)`, so the copy still imports. Tests say which exercise they
check with @pytest.mark.exercise("NAME"); `python -m pytest --exercise=NAME` runs them.
"""
import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join("docs", "exercises.md")
BEGIN = re.compile(r"^(\s*)# --- exercise (\w+) \((solution below|your code here)\) ---\s*$")
END = re.compile(r"^\s*# --- end exercise ---\s*$")
SKIP_DIRS = {".git", "out", "__pycache__", ".pytest_cache", ".whl"}


class KitError(Exception):
    pass


# -----------------------------------------------------------------------------
# finding and blanking exercises

def source_files(root=ROOT):
    """The project's Python files outside tests/, in a fixed order."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith(".")
                         and not (d == root and x == "tests"))
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".py")]
    return out


def find_in(path, text):
    """[(name, begin line index, end line index, indent)] of one file's marked regions.
    Unclosed, nested or empty regions are errors naming the file and line."""
    found, open_ = [], None
    for i, line in enumerate(text.split("\n")):
        m = BEGIN.match(line)
        if m:
            if open_:
                raise KitError(f"{path}:{i + 1}: exercise {m.group(2)} begins inside "
                               f"exercise {open_[0]} (line {open_[1] + 1})")
            open_ = (m.group(2), i, m.group(1))
        elif END.match(line):
            if not open_:
                raise KitError(f"{path}:{i + 1}: 'end exercise' without a beginning")
            if i == open_[1] + 1:
                raise KitError(f"{path}:{i + 1}: exercise {open_[0]} is empty")
            found.append((open_[0], open_[1], i, open_[2]))
            open_ = None
    if open_:
        raise KitError(f"{path}:{open_[1] + 1}: exercise {open_[0]} has no 'end exercise'")
    return found


def find_exercises(root=ROOT):
    """{name: (file relative to root, first line of the solution (1-based))}, in source
    order. A name used twice is an error."""
    out = {}
    for path in source_files(root):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(path, root)
        for name, b, _, _ in find_in(rel, text):
            if name in out:
                raise KitError(f"{rel}:{b + 1}: exercise {name} is also in {out[name][0]}")
            out[name] = (rel, b + 2)
    return out


def blank_text(path, text, names):
    """The file's text with the named exercises' solutions replaced by a raise."""
    lines = text.split("\n")
    for name, b, e, indent in reversed(find_in(path, text)):
        if name in names:
            msg = f"exercise {name}: your code here (docs/exercises.md)"
            lines[b:e + 1] = [f"{indent}# --- exercise {name} (your code here) ---",
                              f"{indent}raise NotImplementedError({msg!r})",
                              f"{indent}# --- end exercise ---"]
    return "\n".join(lines)


def copy_repo(dst, names=()):
    """The working tree (less .git, out/ and caches) copied to dst, the named exercises
    blank. Every blanked file must still parse."""
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS]
        rel = os.path.relpath(d, ROOT)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            if f.endswith(".pyc"):
                continue
            src, out = os.path.join(d, f), os.path.join(dst, rel, f)
            if names and f.endswith(".py"):
                with open(src, encoding="utf-8") as fh:
                    text = fh.read()
                new = blank_text(os.path.relpath(src, ROOT), text, names)
                if new != text:
                    ast.parse(new, filename=out)  # a student copy always imports
                with open(out, "w", encoding="utf-8") as fh:
                    fh.write(new)
                shutil.copymode(src, out)
            else:
                shutil.copy2(src, out)


# -----------------------------------------------------------------------------
# running an exercise's tests

def run_tests(cwd, args, timeout=600):
    """python -m pytest ARGS in cwd -> (tests, failed (failures + errors), seconds, output
    tail). Counts come from a JUnit XML report."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "report.xml")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={xml}", *args], cwd=cwd, env=env, timeout=timeout,
                           capture_output=True, text=True)
        dt = time.time() - t0
        tests = failed = 0
        if os.path.exists(xml):
            for suite in ET.parse(xml).getroot().iter("testsuite"):
                tests += int(suite.get("tests", 0)) - int(suite.get("skipped", 0))
                failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    tail = "\n".join((p.stdout + p.stderr).strip().split("\n")[-15:])
    return tests, failed, dt, tail, p.returncode


def marked_tests():
    """{exercise name: [test ids]} from the exercise marks on the collected tests."""
    import pytest

    class Collect:
        def __init__(self):
            self.marks = {}

        def pytest_collection_finish(self, session):
            for item in session.items:
                for m in item.iter_markers("exercise"):
                    for name in m.args:
                        self.marks.setdefault(name, []).append(item.nodeid)
    c = Collect()
    with open(os.devnull, "w") as null:
        out, sys.stdout = sys.stdout, null
        try:
            code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider",
                                os.path.join(ROOT, "tests")], plugins=[c])
        finally:
            sys.stdout = out
    if code != 0:
        raise KitError(f"collecting the tests failed (pytest exit {code})")
    return c.marks


def documented(root=ROOT):
    """The exercise names with a '## NAME' section in docs/exercises.md, in order."""
    path = os.path.join(root, DOCS)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return re.findall(r"^## \d+\. `?(\w+)`?", f.read(), flags=re.M)


# -----------------------------------------------------------------------------
# the commands

def cmd_list(args):
    docs = documented()
    ex = find_exercises()
    for name in sorted(ex, key=lambda n: docs.index(n) if n in docs else len(docs)):
        path, line = ex[name]
        print(f"{name:18s} {path + ':' + str(line):18s} python -m pytest --exercise={name} -q")


def cmd_make(args):
    ex = find_exercises()
    names = set(ex) if args.only is None else {args.only}
    if args.only is not None and args.only not in ex:
        raise KitError(f"--only {args.only}: no such exercise; known: {', '.join(ex)}")
    if os.path.exists(args.dir) and os.listdir(args.dir):
        raise KitError(f"{args.dir} exists and is not empty: give a new folder")
    if os.path.abspath(args.dir).startswith(ROOT + os.sep):
        raise KitError(f"{args.dir} is inside the repository: give a folder outside it")
    copy_repo(args.dir, names)
    print(f"wrote {args.dir}: a student copy with {len(names)} exercise(s) blank: "
          + ", ".join(n for n in ex if n in names))
    print(f"each one's tests: cd {args.dir} && python -m pytest --exercise=NAME -q")


def run_in_copy(blank, args):
    """run_tests in a temporary copy of the repository with the exercises `blank` blank;
    with nothing blank, in the repository itself."""
    if not blank:
        return run_tests(ROOT, args)
    with tempfile.TemporaryDirectory() as tmp:
        copy_repo(tmp, blank)
        return run_tests(tmp, args)


def cmd_check(args):
    """Nothing blank: every exercise's tests pass. One exercise blank alone: its own tests
    fail. In order (it and the exercises before it done, those after it blank): its tests
    pass. Every exercise blank: every test of no exercise, less the end-to-end runs,
    passes. Each is a pytest run of its own, run side by side on the CPU's cores."""
    problems = []
    ex = find_exercises()
    marks, docs = marked_tests(), documented()
    for name in ex:
        if name not in marks:
            problems.append(f"exercise {name} ({ex[name][0]}) has no test marked "
                            f"@pytest.mark.exercise({name!r})")
        if name not in docs:
            problems.append(f"exercise {name} has no '## N. {name}' section in {DOCS}")
    for name in marks:
        if name not in ex:
            problems.append(f"tests are marked exercise({name!r}), which no source file marks: "
                            + ", ".join(marks[name][:3]))
    for name in docs:
        if name not in ex:
            problems.append(f"{DOCS} lists exercise {name}, which no source file marks")
    order = [n for n in docs if n in ex] + [n for n in ex if n not in docs and n in marks]

    def own(name):  # only the files holding its tests: collecting the others is wasted time
        return sorted({t.split("::")[0] for t in marks[name]}) + [f"--exercise={name}"]
    jobs = dict(baseline=((), ["-m", "exercise"]),
                student=(set(ex), ["-m", "not exercise and not e2e"]))
    for i, name in enumerate(order):
        jobs["alone", name] = ({name}, own(name))
        jobs["in order", name] = (set(order[i + 1:]), own(name))
    workers = args.jobs or min(4, os.cpu_count() or 1)
    print(f"{len(ex)} exercises: {len(jobs)} pytest runs, {workers} at a time ...", flush=True)
    t0 = time.time()
    with ThreadPoolExecutor(workers) as pool:
        futures = {k: pool.submit(run_in_copy, *v) for k, v in jobs.items()}
        res = {k: f.result() for k, f in futures.items()}

    tests, failed, dt, tail, _ = res["baseline"]
    print(f"nothing blank: {tests} exercise tests, {failed} failed ({dt:.1f}s)")
    if failed or not tests:
        problems.append(f"with nothing blank, {failed} of {tests} exercise tests fail:\n{tail}")
    print(f"\n{'':18s} {'blank alone':>26s}   {'in order':>8s}")
    print(f"{'exercise':18s} {'tests run':>9s} {'failed':>7s} {'seconds':>8s}   {'failed':>8s}"
          "  caught")
    for i, name in enumerate(order):
        tests, failed, dt, tail, _ = res["alone", name]
        _, failed_in_order, _, tail_in_order, _ = res["in order", name]
        caught = tests > 0 and failed > 0
        print(f"{name:18s} {tests:9d} {failed:7d} {dt:8.1f}   {failed_in_order:8d}  "
              f"{'yes' if caught else 'NO'}")
        if not caught:
            problems.append(f"exercise {name} blank: {failed} of its {tests} tests fail, so "
                            f"a student's empty solution passes:\n{tail}")
        if failed_in_order:
            problems.append(f"exercise {name}'s tests fail with the exercises after it blank "
                            f"({', '.join(order[i + 1:])}): a test needs a later exercise; "
                            f"mark it with that one\n{tail_in_order}")
    tests, failed, dt, tail, code = res["student"]
    print(f"\nevery exercise blank (a student copy): {tests} tests of no exercise, less the "
          f"end-to-end runs, {failed} failed ({dt:.1f}s)")
    if failed or code not in (0, 5):
        problems.append(f"in a student copy, {failed} tests outside the exercises fail (mark "
                        f"them with the exercise they need, or e2e):\n{tail}")

    if problems:
        print("\nthe kit is broken:\n- " + "\n- ".join(problems))
        return 1
    print(f"\nthe kit holds: all {len(order)} exercises are caught by their own tests "
          f"({time.time() - t0:.0f}s)")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the exercises, their files and test commands")
    mk = sub.add_parser("make", help="write a student copy of the repository")
    mk.add_argument("dir")
    mk.add_argument("--only", metavar="NAME", help="blank this exercise only")
    ck = sub.add_parser("check", help="prove every exercise is caught by its tests")
    ck.add_argument("--jobs", type=int, default=0,
                    help="pytest runs side by side (default: the CPU count, at most 4)")
    args = ap.parse_args(argv)
    try:
        return dict(list=cmd_list, make=cmd_make, check=cmd_check)[args.cmd](args) or 0
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
