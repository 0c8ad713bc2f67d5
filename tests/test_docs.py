"""The documents point only at things that exist: every relative link and every file
named in backticks in README.md, RESULTS.md and docs/*.md is in the repository, and
every command-line flag they show is one the script takes.

    python -m pytest tests/test_docs.py -q     (from the repository root; a second)
"""
import glob
import importlib
import os
import re

import pytest

from conftest import ROOT

DOCS = sorted(p for p in [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "RESULTS.md")]
              + glob.glob(os.path.join(ROOT, "docs", "*.md")) if os.path.isfile(p))
# a path in backticks: a name with a known extension, or a folder ending in /
PATH = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|md|sh|json|jsonl|svg|txt|pt)|"
                  r"(?:[\w.-]+/)+)`")
MADE_BY_RUNS = ("out/", "ckpt.pt", "metrics.jsonl", "best_of.json", "path/to", "my_task",
                "train.jsonl", "FOLDER", "GPT2", "hh/", "../")


def repo_files():
    """Every file of the working tree (less out/ and caches), and every file's name: a bare
    name in backticks (`sft.jsonl`, `test_data.py`) must be the name of some file here.
    Walked, not asked of git, so a student copy without .git checks the same."""
    files = []
    for d, dirs, names in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in ("out", "__pycache__") and not x.startswith(".")]
        files += [os.path.relpath(os.path.join(d, n), ROOT) for n in names]
    dirs = {os.path.dirname(f) for f in files}
    return set(files) | dirs | {os.path.basename(f) for f in files}


def named_paths(text):
    return {m for m in PATH.findall(text)
            if not any(m.startswith(p) or p in m for p in MADE_BY_RUNS)}


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_every_relative_link_and_named_file_exists(doc):
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    here = os.path.dirname(doc)
    missing = []
    for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", link) and not os.path.exists(os.path.join(here, link)):
            missing.append(f"link {link}")
    known = repo_files()
    for path in named_paths(text):
        if path.rstrip("/") not in known and not any(
                os.path.exists(os.path.join(base, path)) for base in (ROOT, here)):
            missing.append(f"`{path}`")
    assert not missing, f"{os.path.relpath(doc, ROOT)} points at what is not there: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_every_flag_shown_with_a_script_is_one_it_takes(doc):
    """`python SCRIPT.py ... --name=...`: an unknown name would be refused by the script."""
    with open(doc, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    wrong = []
    for script, args in re.findall(r"python (jsft|selfjudge|evaluate|judge|sample|plot)\.py"
                                   r"([^\n`|]*)", text):
        known = importlib.import_module(script).defaults
        for name in re.findall(r"--(\w+)", args):
            if name not in known and name != "help":
                wrong.append(f"{script}.py --{name}")
    assert not wrong, f"{os.path.relpath(doc, ROOT)} shows flags the scripts do not take: {wrong}"


def test_every_document_the_code_names_exists():
    """Docstrings and messages point at documents (docs/exercises.md, RESULTS.md); three
    files once named a design document that was never in the repository."""
    missing = []
    for path in sorted(f for f in repo_files() if f.endswith(".py")
                       and os.path.isfile(os.path.join(ROOT, f))):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                for doc in re.findall(r"((?:[\w.-]+/)*[\w-]+\.md)\b", line):
                    if not any(os.path.exists(os.path.join(ROOT, d, doc)) for d in ("", "docs")):
                        missing.append(f"{path}:{n}: {doc}")
    assert not missing, f"the code names documents that are not there: {missing}"


def test_every_section_named_is_a_heading_of_its_document():
    """A document's name, a comma and a heading in double quotes sends a reader to a
    section: when the README became a guide, eleven such pointers in docs/exercises.md and
    two in the code named sections it had moved to RESULTS.md or dropped."""
    where = dict(README="README.md", **{"README.md": "README.md", "RESULTS.md": "RESULTS.md"})
    wrong = []
    for path in sorted(f for f in repo_files() if f.endswith((".py", ".md", ".sh"))
                       and os.path.isfile(os.path.join(ROOT, f))):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            text = f.read()
        for doc, section in re.findall(r"\b(README(?:\.md)?|RESULTS\.md|docs/[\w-]+\.md),\s+"
                                       r"\"([^\"\n]+)\"", text):
            with open(os.path.join(ROOT, where.get(doc, doc)), encoding="utf-8") as f:
                headings = [line for line in f if line.startswith("#")]
            if not any(section in h for h in headings):
                wrong.append(f'{path}: {doc}, "{section}"')
    assert not wrong, f"sections named that their documents lack: {wrong}"


def test_every_function_named_beside_its_file_is_there():
    """`jsft.py: judge_examples` sends a reader to a name in a file: the README's reading
    path and its table of the method name functions that moved between files before."""
    wrong = []
    for doc in DOCS:
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        for path, name in re.findall(r"`((?:data/)?\w+)\.py: (\w+)`", text):
            module = importlib.import_module(path.replace("/", "."))
            if not hasattr(module, name):
                wrong.append(f"{os.path.relpath(doc, ROOT)}: {path}.py: {name}")
    assert not wrong, f"functions named that their files lack: {wrong}"
