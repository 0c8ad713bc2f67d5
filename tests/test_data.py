"""Tests for the data package: the embedded tasks (sort, words; dedupe's generator), the
loader, the HH importer, the helpers.

    python -m pytest tests/test_data.py -q     (from the repository root; a few seconds)
"""
import json
import os
import re
import subprocess
import sys

import pytest

from data.hh import convert, split_example
from data.task import (CHAT_TOKENS, DataError, check_lengths, fully_right_rate, load_task,
                       mean_score, principle_text, read_jsonl, train_tokenizer, win_rate)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SORT = os.path.join(ROOT, "data", "sort")
WORDS = os.path.join(ROOT, "data", "words")
COMMITTED = {"sort": SORT, "words": WORDS}  # task name -> folder (data/make_<name>.py)


@pytest.fixture(scope="module")
def task():
    return load_task(SORT)


@pytest.fixture(scope="module")
def words():
    return load_task(WORDS)


@pytest.fixture(scope="module", params=sorted(COMMITTED))
def any_task(request):
    return load_task(COMMITTED[request.param])


# -----------------------------------------------------------------------------
# what every committed task keeps

@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_generator_rebuilds_committed_files_byte_for_byte(tmp_path, name):
    out, folder = tmp_path / name, COMMITTED[name]
    subprocess.run([sys.executable, "-m", f"data.make_{name}", "--out_dir", str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    committed = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
    assert sorted(os.listdir(out)) == committed
    for file in committed:
        with open(os.path.join(folder, file), "rb") as a, open(out / file, "rb") as b:
            assert a.read() == b.read(), f"{file} differs from what the generator writes"


def test_sft_demonstrations_are_imperfect(any_task):
    t = any_task
    rate = fully_right_rate(t.oracle, t.sft, [r["response"] for r in t.sft])
    assert 0.4 <= rate <= 0.6


def test_prompt_sets_disjoint(any_task):
    t = any_task
    sets = {n: {r["prompt"] for r in t.require(n)} for n in ("sft", "pairs", "prompts", "test")}
    assert len(sets["sft"]) == len(t.sft)
    assert len(sets["prompts"]) == len(t.prompts) and len(sets["test"]) == len(t.test)
    assert not sets["test"] & (sets["sft"] | sets["pairs"] | sets["prompts"])
    assert not sets["prompts"] & (sets["sft"] | sets["pairs"])


def test_labels_disagree_with_the_oracle_within_band(any_task):
    score = any_task.oracle
    sc = [(score(r["prompt"], r["chosen"]), score(r["prompt"], r["rejected"]))
          for r in any_task.pairs]
    assert all(c != r for c, r in sc), "every pair differs in oracle score"
    assert 0.07 <= sum(c < r for c, r in sc) / len(sc) <= 0.13


# -----------------------------------------------------------------------------
# the default task


def test_oracle_known_answers(task):
    score, p = task.oracle, "sort: 7 3 9 1 4"
    assert score(p, "1 3 4 7 9") == 1.0
    swap, drop, change = score(p, "1 4 3 7 9"), score(p, "1 3 7 9"), score(p, "1 3 5 7 9")
    moved, reverse = score(p, "3 4 7 1 9"), score(p, "9 7 4 3 1")
    assert swap == drop == change == pytest.approx(0.8)  # one mistake out of five
    assert 1.0 > swap > moved > reverse > 0.0
    assert score(p, "1 3 4 7 9 ") < 1.0 and score(p, "1  3 4 7 9") < 1.0  # not exact
    assert score(p, "1 3 4 7 9 ") < swap  # right numbers, wrong format: half credit
    assert score(p, "1 3 4 7 9 and done") < score(p, "1 3 4 7 9 9")
    assert score(p, "") == 0.0 and score(p, "hello") == 0.0
    assert 0.0 < score(p, "I think 1 3 4 7 9") < 0.5  # not a list: low credit
    for r in ("1 3 4 7 9 9 9 9 9 9 9 9", "x", "9 9 9 9 9 9 9 9 9 9 9 9 9"):
        assert 0.0 <= score(p, r) <= 1.0


def test_pairs_cover_every_list_length_the_test_set_has(task):
    """Distinct prompts everywhere left the pairs 0.3% of the three-digit lists (there are
    only 1000) against 31% of test prompts: a judge with no data there preferred
    "2 2 7 9" to "2 7 9". Every length of the test set now has its share of pairs."""
    def shares(records):
        n = [len(r["prompt"].split()) - 1 for r in records]
        return {k: n.count(k) / len(n) for k in set(n)}
    pairs = shares(task.pairs)
    for length in shares(task.test):
        assert pairs.get(length, 0) >= 0.10, (length, pairs)


def test_pairs_hold_plausible_but_wrong_responses(task):
    """The blind spot: rejected answers that are sorted, complete in length, yet wrong."""
    plausible = sum(
        r["rejected"].split() == sorted(r["rejected"].split(), key=int)
        and len(r["rejected"].split()) == len(r["prompt"].split()) - 1
        and task.oracle(r["prompt"], r["rejected"]) < 1.0 for r in task.pairs)
    assert plausible / len(task.pairs) >= 0.15


COMPLETE = "is sorted and complete."


def named_mistakes(rationale):
    """A sort rationale read back -> [(verb, numbers)], one entry per mistake it names:
    "drops 3 and 5 and puts 7 before 2." -> [("drops", [3]), ("drops", [5]),
    ("puts", [7, 2])]. Clauses start with a verb; " and 5" continues a list."""
    if rationale == COMPLETE:
        return []
    out = []
    for clause in re.split(r" and (?=[a-z])", rationale.removesuffix(".")):
        verb, *rest = clause.split(" ")
        nums = [int(t) for t in rest if t.isdigit()]
        if verb in ("drops", "repeats", "adds"):
            out += [(verb, [n]) for n in nums]
        else:
            assert (verb, len(nums)) in (("has", 2), ("puts", 2), ("is", 0)), rationale
            out.append(("order" if verb == "is" else verb, nums))
    return out


def perceived_cost(rationale):
    """How bad a rationale says its response is: one per mistake named, two for "is out
    of order" (a move, which the oracle too charges two edits against a swap's one)."""
    return sum(2 if verb == "order" else 1 for verb, _ in named_mistakes(rationale))


def check_rationales_argue_for_the_chosen(pairs):
    """The label and both rationales come from one judgment: no pair rejects a response
    its rationale calls complete while the chosen one's names a mistake, and the chosen
    rationale never names more (or heavier) mistakes than the rejected one."""
    for r in pairs:
        rc, rr = r["rationale_chosen"], r["rationale_rejected"]
        assert not (rr == COMPLETE and rc != COMPLETE), (r["_line"], rc, rr)
        assert perceived_cost(rc) <= perceived_cost(rr), (r["_line"], rc, rr)


def test_pairs_rationales_argue_for_the_chosen(task):
    check_rationales_argue_for_the_chosen(task.pairs)


def test_rationales_name_numbers_possible_for_their_prompt(task):
    """Imagined mistakes use real ones' words: a dropped or repeated number is one of the
    prompt's, an added one is in the response, "puts x before y" names two of the
    response's numbers, larger first, and "has x instead of y" replaces a number of the
    prompt by a digit."""
    for r in task.pairs:
        prompt = [int(t) for t in r["prompt"].split()[1:]]
        for side in ("chosen", "rejected"):
            response = [int(t) for t in r[side].split()]
            for verb, nums in named_mistakes(r["rationale_" + side]):
                where = (r["_line"], side, r["rationale_" + side])
                if verb in ("drops", "repeats"):
                    assert nums[0] in prompt, where
                elif verb == "adds":
                    assert nums[0] in response, where
                elif verb == "has":
                    assert nums[1] in prompt and 0 <= nums[0] <= 9, where
                elif verb == "puts":
                    assert nums[0] > nums[1] and set(nums) <= set(response), where


def test_tokenizer(task):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(task.tokenizer_file)
    assert [tok.token_to_id(t) for t in CHAT_TOKENS] == [0, 1, 2]
    for s in ("A", "B", " 7", "7", " 0"):
        assert len(tok.encode(s).ids) == 1, s
    for s in task.texts()[:200] + ["sort: 1 2\n\nResponse A: x, é!"]:
        assert tok.decode(tok.encode(s).ids) == s
    # the judge's question, in every judge example, is words, not letters: the tokenizer
    # was trained on the principles' questions as well as on the files
    for name in ("default",) + task.principles:
        assert len(tok.encode(principle_text(name)).ids) == 4, principle_text(name)


def test_train_tokenizer_deterministic():
    texts = [f"sort: {i} {i * 7 % 13}" for i in range(200)]
    a, b = train_tokenizer(texts, vocab_size=300), train_tokenizer(texts, vocab_size=300)
    assert a.to_str() == b.to_str()
    assert a.get_vocab_size() <= 300 and a.token_to_id("<|end|>") == 2


# -----------------------------------------------------------------------------
# the second task, number words: the "Bring your own data" layout (no principle, no
# rationales, no tokenizer.json)

def test_words_oracle_known_answers(words):
    score, p = words.oracle, "words: 4521"
    assert score(p, "four thousand five hundred twenty one") == 1.0
    for n, answer in ((0, "zero"), (7, "seven"), (14, "fourteen"), (40, "forty"),
                      (105, "one hundred five"), (1010, "one thousand ten"),
                      (7000, "seven thousand"), (9999, "nine thousand nine hundred ninety nine")):
        assert score(f"words: {n}", answer) == 1.0, answer
    one = pytest.approx(1 - 1 / 6)  # one mistake in six words
    assert score(p, "four thousand six hundred twenty one") == one      # wrong digit
    assert score(p, "four thousand five twenty one") == one             # dropped "hundred"
    assert score(p, "four thousand hundred five twenty one") == one     # swapped neighbours
    assert score(p, "four thousand five hundred twenty one one") == pytest.approx(1 - 1 / 7)
    assert score("words: 614", "six hundred forty") == pytest.approx(2 / 3)  # forty/fourteen
    assert score(p, "four thousand five hundred twenty one ") < 1.0     # not exact
    assert score(p, "Four thousand five hundred twenty-one") < score(p, "four thousand five")
    assert score(p, "") == 0.0 and score(p, "hello") == 0.0
    for bad in ("words: 0123", "words: 10000", "sort: 1 2", "words:  7"):
        with pytest.raises(ValueError):
            score(bad, "seven")


def test_words_files_hold_only_the_required_fields(words):
    """No principle, no rationales, no tokenizer: the documented minimum, which jsft.py
    must handle (it trains a tokenizer, and judges with the default question)."""
    assert words.tokenizer_file is None and words.principles == ()
    fields = {"sft": {"prompt", "response"}, "pairs": {"prompt", "chosen", "rejected"},
              "prompts": {"prompt"}, "test": {"prompt"}}
    for name, want in fields.items():
        with open(os.path.join(WORDS, name + ".jsonl"), encoding="utf-8") as f:
            assert all(set(json.loads(line)) == want for line in f), name


def test_words_tokenizer_as_jsft_trains_it(words):
    """jsft.py trains a BPE of 512 tokens on the folder's text: the decisions A and B must
    come out as single tokens after the judge prompt (judge.decision_ids raises
    otherwise), and the longest judge example must fit the default 128-token context
    (checked on the 100 longest pairs by characters, the only candidates)."""
    from judge import decision_ids, judge_query
    from data.chat import add_chat_tokens
    tok = add_chat_tokens(train_tokenizer(words.texts(), vocab_size=512))
    decision_ids(tok)
    longest = sorted(words.pairs, key=lambda r: -len(r["prompt"] + r["chosen"] + r["rejected"]))
    n = max(len(judge_query(tok, r["prompt"], a, b)) + 1
            for r in longest[:100] for a, b in ((r["chosen"], r["rejected"]),
                                                 (r["rejected"], r["chosen"])))
    assert n <= 128


# -----------------------------------------------------------------------------
# the third task, deduplication: generated where it is needed, never committed

def test_dedupe_generator_writes_a_loadable_task(tmp_path, capsys):
    from data.make_dedupe import generate
    out = str(tmp_path / "dedupe")
    got = generate(out_dir=out, n_sft=200, n_pairs=400, n_prompts=40, n_test=20)
    t = load_task(out)
    assert (len(t.sft), len(t.pairs), len(t.prompts), len(t.test)) == (200, 400, 40, 20)
    assert t.tokenizer_file is None and t.principles == () and "pairs: {" in capsys.readouterr().out
    score = t.oracle
    assert score("dedupe: red fox red owl sun fox", "red fox owl sun") == 1.0
    assert score("dedupe: red fox red owl sun fox", "red fox owl sun fox") == pytest.approx(0.8)
    assert score("dedupe: red fox red owl", "fox red owl") == pytest.approx(2 / 3)  # kept last
    assert 0.3 <= got["sft_fully_right"] <= 0.7 and 0.05 <= got["tie_share"] <= 0.4
    sets = {n: {r["prompt"] for r in getattr(t, n)} for n in ("sft", "pairs", "prompts", "test")}
    assert not sets["test"] & (sets["sft"] | sets["pairs"] | sets["prompts"])
    assert not sets["prompts"] & (sets["sft"] | sets["pairs"])
    # nested pairs, as sort's and words': one mistake apart, never an oracle tie
    got = generate(out_dir=out, n_sft=20, n_pairs=300, n_prompts=4, n_test=4,
                   pair_style="nested")
    t = load_task(out)
    assert got["tie_share"] == 0.0 and len(t.pairs) == 300
    assert all(score(r["prompt"], r["chosen"]) != score(r["prompt"], r["rejected"])
               for r in t.pairs)


# -----------------------------------------------------------------------------
# pair_extra_mistakes: how far pairs.jsonl lies from what the policy writes

GENERATORS = ("sort", "words", "dedupe")
SMALL = dict(n_sft=200, n_pairs=400, n_prompts=30, n_test=20)


def generate_small(monkeypatch, folder, name, k, **kw):
    """data/make_NAME.py's task at small sizes into folder, with k extra mistakes a pair
    response; -> the generator's printed lines are left to capsys."""
    import importlib
    module = importlib.import_module(f"data.make_{name}")
    if name == "dedupe":  # takes its sizes as arguments
        kw.update(SMALL)
    else:  # reads them from its settings block
        for key, value in SMALL.items():
            monkeypatch.setattr(module, key, value)
    module.generate(out_dir=str(folder), pair_extra_mistakes=k, **kw)
    return str(folder)


@pytest.mark.parametrize("name", GENERATORS)
def test_pair_extra_mistakes_changes_pairs_jsonl_alone(tmp_path, monkeypatch, name):
    """One JSFT checkpoint serves the default folder and a far copy only if prompts,
    demonstrations, test prompts and (sort's) tokenizer.json are the same bytes."""
    near = generate_small(monkeypatch, tmp_path / "k0", name, 0)
    far = generate_small(monkeypatch, tmp_path / "k2", name, 2)
    assert sorted(os.listdir(near)) == sorted(os.listdir(far))
    for file in sorted(os.listdir(near)):
        with open(os.path.join(near, file), "rb") as a, open(os.path.join(far, file), "rb") as b:
            same = a.read() == b.read()
        assert same == (file != "pairs.jsonl"), f"{file} {'same' if same else 'differs'} at k=2"
    # the same prompts, in the same order: only the responses moved
    assert ([r["prompt"] for r in load_task(near).pairs]
            == [r["prompt"] for r in load_task(far).pairs])


@pytest.mark.parametrize("name", GENERATORS)
def test_pair_extra_mistakes_lower_the_pairs_oracle_score(tmp_path, monkeypatch, capsys, name):
    """Each extra mistake moves the pairs' responses further below the demonstrations (which
    the policy imitates), the pairs still differ as the generator's rule says, a far pair
    holds no right answer, and the generator prints the distance."""
    kw = {"pair_style": "nested"} if name == "dedupe" else {}
    means = []
    for k in (0, 1, 2):
        t = load_task(generate_small(monkeypatch, tmp_path / f"k{k}", name, k, **kw))
        sc = [(t.oracle(r["prompt"], r["chosen"]), t.oracle(r["prompt"], r["rejected"]))
              for r in t.pairs]
        assert all(c != r for c, r in sc), f"k={k}: a pair the oracle scores the same"
        assert k == 0 or all(max(c, r) < 1.0 for c, r in sc), f"k={k}: a right answer"
        means.append(sum(c + r for c, r in sc) / (2 * len(sc)))
        demos = sum(t.oracle(r["prompt"], r["response"]) for r in t.sft) / len(t.sft)
        line = [x for x in capsys.readouterr().out.splitlines()
                if x.startswith("pairs.jsonl responses:")]
        assert line == [f"pairs.jsonl responses: mean oracle score {means[-1]:.3f} "
                        f"(demonstrations {demos:.3f}): {k} extra "
                        f"mistake{'' if k == 1 else 's'} each (--pair_extra_mistakes)"]
    assert means[0] - means[1] > 0.05 and means[1] - means[2] > 0.05, means


@pytest.mark.parametrize("name", ("sort", "words"))
def test_pair_extra_mistakes_never_overwrite_the_committed_folder(monkeypatch, name):
    import importlib
    module = importlib.import_module(f"data.make_{name}")

    def refuse(*args):  # should the guard fail, fail before anything is written
        raise AssertionError(f"the committed {name} folder was about to be overwritten")
    monkeypatch.setattr(module, "write_task", refuse)
    with pytest.raises(SystemExit):
        module.main(["--pair_extra_mistakes=1"])
    with pytest.raises(ValueError, match="would overwrite the committed"):
        module.generate(pair_extra_mistakes=1)


# -----------------------------------------------------------------------------
# the loader

def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


GOOD = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})
PAIR_FIELDS = ("prompt", "chosen", "rejected")


@pytest.mark.parametrize("bad, what", [
    ('{"prompt": "p", "chosen": "a"', "not valid JSON"),
    ('["p", "a", "b"]', "expected a JSON object"),
    ('{"prompt": "p", "chosen": "a"}', "missing field 'rejected'"),
    ('{"prompt": "p", "chosen": 3, "rejected": "b"}', "field 'chosen' must be a string"),
    ('{"prompt": "  ", "chosen": "a", "rejected": "b"}', "empty prompt"),
    ('{"prompt": "p", "chosen": "a", "rejected": "a"}', "chosen and rejected are identical"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "principle": null}',
     "field 'principle' must be a string"),
])
def test_read_jsonl_names_file_line_and_problem(tmp_path, bad, what):
    path = write(tmp_path / "pairs.jsonl", [GOOD, "", GOOD, bad, GOOD])
    with pytest.raises(DataError) as e:
        read_jsonl(path, PAIR_FIELDS, ("principle",))
    assert f"{path}:4: {what}" in str(e.value)


def test_read_jsonl_skip_bad_lines_counts_them(tmp_path, capsys):
    path = write(tmp_path / "pairs.jsonl", [GOOD, "nope", GOOD, "{}", "[]", GOOD])
    records = read_jsonl(path, PAIR_FIELDS, skip_bad_lines=True)
    assert [r["_line"] for r in records] == [1, 3, 6] and records[0]["_file"] == path
    out = capsys.readouterr().out
    assert "skipped 3 bad line(s)" in out and f"{path}:2: not valid JSON" in out


def test_a_byte_order_mark_at_the_start_of_a_file_is_accepted(tmp_path):
    """Some editors start a UTF-8 file with a byte-order mark: line 1 was "not valid JSON",
    and the advice, skipping bad lines, threw a valid line away."""
    plain = write(tmp_path / "pairs.jsonl", [GOOD, GOOD])
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "pairs.jsonl").read_bytes())
    fields = lambda rs: [{k: v for k, v in r.items() if k != "_file"} for r in rs]  # noqa
    assert fields(read_jsonl(str(bom), PAIR_FIELDS)) == fields(read_jsonl(plain, PAIR_FIELDS))
    bom.write_bytes((GOOD + "\n\ufeff" + GOOD + "\n").encode())  # not at the start: a bad line
    with pytest.raises(DataError, match=":2: not valid JSON"):
        read_jsonl(str(bom), PAIR_FIELDS)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_file_is_an_error_naming_it(tmp_path, text):
    (tmp_path / "prompts.jsonl").write_text(text)
    with pytest.raises(DataError, match=rf"prompts\.jsonl: no examples \(needs one JSON object "
                                        r"a line with prompt\)"):
        load_task(str(tmp_path))


def test_missing_file_and_missing_stage(tmp_path):
    with pytest.raises(DataError, match="no such file.*sft.jsonl"):
        read_jsonl(str(tmp_path / "sft.jsonl"), ("prompt", "response"))
    with pytest.raises(DataError, match="no such folder"):
        load_task(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no task files"):
        load_task(str(tmp_path))
    write(tmp_path / "pairs.jsonl", [GOOD])
    write(tmp_path / "prompts.jsonl", ['{"prompt": "q"}'])
    t = load_task(str(tmp_path))
    assert t.sft is None and t.test is None and t.oracle is None and len(t.pairs) == 1
    with pytest.raises(DataError, match=r"sft\.jsonl is missing: jsft\.py"):
        t.require("sft")
    assert t.require("prompts")[0]["prompt"] == "q"


def test_task_without_oracle_skips_metrics(tmp_path, capsys):
    write(tmp_path / "test.jsonl", ['{"prompt": "q"}'])
    t = load_task(str(tmp_path))
    assert t.get_oracle() is None
    assert f"no oracle.py in {tmp_path}: oracle metrics skipped" in capsys.readouterr().out
    assert win_rate(None, ["q"], ["a"], ["b"]) is None
    assert mean_score(None, ["q"], ["a"]) is None


def test_check_lengths_names_file_and_line(tmp_path, capsys):
    path = write(tmp_path / "sft.jsonl", ['{"prompt": "p", "response": "short"}',
                                          '{"prompt": "p", "response": "much too long"}'])
    records = read_jsonl(path, ("prompt", "response"))
    lengths = [len((r["prompt"] + r["response"]).encode()) for r in records]  # 6 and 14
    with pytest.raises(DataError, match=rf"{path}:2: prompt \+ response is 14 tokens"):
        check_lengths(records, lengths, 10, "prompt + response")
    assert check_lengths(records, lengths, 14) == [0, 1]
    kept = check_lengths(records, lengths, 10, skip=True)
    assert [records[i]["_line"] for i in kept] == [1]
    assert "dropped 1 of 2" in capsys.readouterr().out


# -----------------------------------------------------------------------------
# the oracle is checked, not trusted

def oracle_task(tmp_path, body):
    """A one-file task whose oracle.py is `def score(p, r): BODY`."""
    write(tmp_path / "test.jsonl", ['{"prompt": "sort: 3 1 2"}'])
    write(tmp_path / "sft.jsonl", ['{"prompt": "sort: 2 1", "response": "1 2"}'])
    (tmp_path / "oracle.py").write_text(f"def score(p, r):\n    {body}\n")
    return str(tmp_path)


@pytest.mark.parametrize("body, says", [
    ('return float("nan")', "returned nan (float): it must return a finite float"),
    ('return float("inf")', "returned inf (float): it must return a finite float"),
    ('return "1.0"', "returned '1.0' (str): it must return a finite float"),
    ("return None", "returned None (NoneType): it must return a finite float"),
    ('return r == "1 2"', "returned True (bool): a bool; return float(...)"),
    ("raise KeyError(r)", "raised KeyError: \"'1 2'\""),
])
def test_a_bad_oracle_is_refused_when_the_task_loads(tmp_path, body, says):
    """A NaN gave made-up figures with exit 0 ("oracle ties 0.0%", "50.0% win, 100.0%
    ties"); a string or an exception surfaced after training, as a traceback."""
    path = oracle_task(tmp_path, body)
    with pytest.raises(DataError) as e:
        load_task(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}/oracle.py: score('sort: 3 1 2', '1 2') ") and says in msg
    assert msg.endswith("(a trial call as the task loads, before any training)")
    assert "\n" not in msg


def test_a_nan_on_a_later_call_names_oracle_prompt_and_response(tmp_path):
    path = oracle_task(tmp_path, 'return float("nan") if r == "3 2 1" else len(r)')
    t = load_task(path)  # the trial calls pass
    assert t.oracle("sort: 3 1 2", "1 2 3") == 5.0 and type(t.oracle("p", "")) is float
    with pytest.raises(DataError, match=rf"^{path}/oracle.py: score\('sort: 3 1 2', '3 2 1'\) "
                                        "returned nan"):
        mean_score(t.oracle, ["sort: 3 1 2"] * 2, ["1 2 3", "3 2 1"])


# -----------------------------------------------------------------------------
# the HH-RLHF importer

def hh_line(prompt_turns, chosen, rejected):
    return json.dumps({"chosen": prompt_turns + " " + chosen,
                       "rejected": prompt_turns + " " + rejected})


def test_hh_importer(tmp_path, capsys):
    two_turns = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAssistant:"
    lines = [hh_line(f"\n\nHuman: Question {i}?\n\nAssistant:", f"Answer {i}.", "No.")
             for i in range(40)]
    lines[5] = hh_line(two_turns, "An apple.", "A car.")
    lines[7] = '{"chosen": "\\n\\nHuman: broken'                                 # not JSON
    lines[9] = json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b"})            # no rejected
    lines[11] = json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b",
                            "rejected": "\n\nHuman: c\n\nAssistant: d"})        # prompts differ
    src = write(tmp_path / "hh.jsonl", lines)
    out = str(tmp_path / "task")
    counts = convert(src, out, test_frac=0.2, prompts_frac=0.2, seed=0)
    printed = capsys.readouterr().out
    assert counts["skipped"] == 3 and "skipped 3" in printed and "1 not valid JSON" in printed
    assert counts["pairs"] + counts["prompts"] + counts["test"] == 37
    assert min(counts["pairs"], counts["prompts"], counts["test"]) > 0
    t = load_task(out)
    assert split_example(json.loads(lines[5])) == (two_turns, "An apple.", "A car.")
    assert two_turns in {r["prompt"] for r in t.pairs + t.prompts + t.test}
    assert [r["response"] for r in t.sft] == [r["chosen"] for r in t.pairs]
    prompts = [{r["prompt"] for r in getattr(t, n)} for n in ("pairs", "prompts", "test")]
    assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
    # deterministic: the same input and seed give the same files
    convert(src, str(tmp_path / "again"), test_frac=0.2, prompts_frac=0.2, seed=0)
    for name in ("sft", "pairs", "prompts", "test"):
        with open(os.path.join(out, name + ".jsonl"), "rb") as a, \
                open(tmp_path / "again" / (name + ".jsonl"), "rb") as b:
            assert a.read() == b.read()


# -----------------------------------------------------------------------------
# evaluation helpers

def test_win_rate_excludes_ties():
    score = lambda p, r: float(r)  # noqa: E731
    got = win_rate(score, ["p"] * 5, ["3", "1", "2", "2", "5"], ["1", "3", "2", "2", "4"])
    assert (got["win"], got["tie"], got["loss"]) == (2, 2, 1)
    assert got["win_rate"] == pytest.approx(2 / 3) and got["tie_rate"] == pytest.approx(0.4)
    assert win_rate(score, ["p", "q"], ["1", "2"], ["1", "2"])["win_rate"] == 0.5
    assert mean_score(score, ["p", "q"], ["1", "2"]) == 1.5
    assert fully_right_rate(score, [{"prompt": "p"}] * 2, ["1", "0.5"]) == 0.5
    with pytest.raises(ValueError):
        win_rate(score, ["p"], ["1"], ["1", "2"])
    with pytest.raises(ValueError):
        mean_score(score, [], [])
