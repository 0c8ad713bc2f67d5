"""Shared fixtures: tiny random GPTs that run in milliseconds on a CPU, and a small slice
of the default task for the end-to-end runs of jsft.py and selfjudge.py."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SORT = os.path.join(ROOT, "data", "sort")
sys.path.insert(0, ROOT)

from model import GPT, GPTConfig  # noqa: E402

# Tiny models gain nothing from intra-op threads, and on a CPU shared with a training run
# the threads contend: one thread makes the whole suite several times faster there.
torch.set_num_threads(1)


def make_tiny(vocab_size=64, block_size=48, n_layer=2, n_head=2, n_embd=32, seed=0, **kw):
    """A tiny GPT whose weights are scaled up so its outputs are far from uniform: with
    GPT-2's 0.02 init every token is nearly equally likely and argmax ties hide bugs."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                          n_head=n_head, n_embd=n_embd, **kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "lora_" not in name:
                p.normal_(0.0, 0.3)
    return model.eval()


@pytest.fixture
def tiny():
    return make_tiny()


def write_small_sort(path, sft=200, pairs=300, prompts=40, test=8):
    """The first lines of each file of data/sort, plus its tokenizer and oracle, in PATH:
    the same task, small enough that a whole run takes a second.
    More than 256 pairs by default: selfjudge.py --offline holds out the last 256."""
    os.makedirs(path, exist_ok=True)
    for name, n in dict(sft=sft, pairs=pairs, prompts=prompts, test=test).items():
        with open(os.path.join(SORT, name + ".jsonl")) as f:
            lines = [next(f) for _ in range(n)]
        with open(os.path.join(path, name + ".jsonl"), "w") as f:
            f.writelines(lines)
    for name in ("tokenizer.json", "oracle.py"):
        with open(os.path.join(SORT, name), "rb") as src, \
                open(os.path.join(path, name), "wb") as dst:
            dst.write(src.read())
    return str(path)


# -----------------------------------------------------------------------------
# markers: unit (everything not marked e2e), e2e, and the classroom kit's exercises

def pytest_addoption(parser):
    parser.addoption("--exercise", default="", metavar="NAME[,NAME]",
                     help="run only the tests marked with these exercises (docs/exercises.md)")


def pytest_configure(config):
    for line in ("unit: a fast test of one piece on tiny inputs (every test not marked e2e)",
                 "e2e: runs a stage or a generator end to end",
                 "exercise(name, needs=()): checks this exercise of the classroom kit "
                 "(docs/exercises.md) and skips while one it needs is blank; select with "
                 "--exercise=NAME"):
        config.addinivalue_line("markers", line)


def blank_exercises():
    """The exercises still blank in this copy (tests/exercises.py); none if its markers are
    broken, so that the tests, not this hook, say what is wrong."""
    from exercises import KitError, blank_exercises as blank
    try:
        return blank(ROOT)
    except KitError:
        return set()


@pytest.hookimpl(tryfirst=True)  # before -m deselects: it must see the unit marks
def pytest_collection_modifyitems(config, items):
    blank = None
    for item in items:
        if item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.unit)
        # a test that needs another exercise skips while that one is blank: a student on
        # dpo_loss is not told that response_logps is missing by a failure of dpo_loss
        needs = [n for m in item.iter_markers("exercise") for n in m.kwargs.get("needs", ())]
        if needs:
            blank = blank_exercises() if blank is None else blank
            missing = [n for n in needs if n in blank]
            if missing:
                item.add_marker(pytest.mark.skip(
                    reason=f"needs exercise {', '.join(missing)}, still blank: do it too, or "
                           "see docs/exercises.md, \"Recommended order\""))
    wanted = {n for n in config.getoption("exercise").split(",") if n}
    if not wanted:
        return
    marked = {n for item in items for m in item.iter_markers("exercise") for n in m.args}
    if wanted - marked:
        raise pytest.UsageError(f"--exercise: no test is marked with {sorted(wanted - marked)}"
                                f"; known: {', '.join(sorted(marked))}")
    keep, drop = [], []
    for item in items:
        names = {n for m in item.iter_markers("exercise") for n in m.args}
        (keep if names & wanted else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
