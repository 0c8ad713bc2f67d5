"""The data layer: a task is a folder of JSON Lines files (docs/design.md, "Data: one
folder per task").

    sft.jsonl      prompt, response          jsft.py (SFT part)
    pairs.jsonl    prompt, chosen, rejected  jsft.py (judge part), selfjudge.py --offline
                   optional: principle, rationale_chosen, rationale_rejected
    prompts.jsonl  prompt                    selfjudge.py (on-policy prompts)
    test.jsonl     prompt                    evaluation only
    tokenizer.json optional; train_tokenizer() builds one from the folder's text
    oracle.py      optional; score(prompt, response) -> float, evaluation only

A rationale is a short phrase meant to follow its response's letter, so that it reads
the same whichever position the response is shown in: "drops 7." -> "B drops 7.".

Every loaded record is a dict of its fields plus "_file" and "_line" (1-based), so a
later check (context length, say) can point at the line to fix.
This module imports nothing from the rest of the project.
"""
import importlib.util
import json
import math
import numbers
import os
from dataclasses import dataclass
from typing import Callable, Optional

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data.chat import CHAT_TOKENS, encode_query, encode_response

# name -> (required fields, optional fields, which stage reads it)
FILES = {
    "sft": (("prompt", "response"), (), "jsft.py (SFT part)"),
    "pairs": (("prompt", "chosen", "rejected"),
              ("principle", "rationale_chosen", "rationale_rejected"),
              "jsft.py (judge part) and selfjudge.py --offline"),
    "prompts": (("prompt",), (), "selfjudge.py (on-policy prompts)"),
    "test": (("prompt",), (), "evaluation (held-out prompts)"),
}
LAYOUT = "; ".join(f"{name}.jsonl ({', '.join(req + opt)}) for {stage}"
                   for name, (req, opt, stage) in FILES.items())
MAX_REPORTED = 3  # bad lines quoted in one message

# The judge's questions, by the name a pair's "principle" field gives (judge.py builds the
# judge prompt around them). They live here so that a tokenizer trained on a task learns
# them as words: "Which is correct?" is 4 tokens, not 9 single letters, in every judge
# example and every judgment.
PRINCIPLES = {
    "default": "Which is better?",
    "correctness": "Which is correct?",
    "format": "Which is well formatted?",
}


def principle_text(name):
    """A principle's question; a name not in the table is used as the question itself,
    so a task can bring its own principles."""
    return PRINCIPLES.get(name or "default", name)


class DataError(ValueError):
    """Bad task data; the message names the file, the line and what is wrong."""


# -----------------------------------------------------------------------------
# reading

def _check_record(obj, fields, optional):
    """Returns what is wrong with one parsed line, or None."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for f in fields:
        if f not in obj:
            return f"missing field '{f}' (needs: {', '.join(fields)})"
    for f in fields + tuple(f for f in optional if f in obj):
        if not isinstance(obj[f], str):
            return f"field '{f}' must be a string, got {type(obj[f]).__name__}"
    if "prompt" in fields and not obj["prompt"].strip():
        return "empty prompt"
    if "chosen" in fields and "rejected" in fields and obj["chosen"] == obj["rejected"]:
        return "chosen and rejected are identical"
    return None


def read_jsonl(path, fields, optional=(), skip_bad_lines=False):
    """Reads and validates a JSON Lines file -> list of dicts (fields + _file, _line).

    Blank lines are ignored. A bad line raises DataError naming file, line and problem;
    with skip_bad_lines=True bad lines are dropped and one warning says how many.
    """
    fields, optional = tuple(fields), tuple(optional)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file. A task folder holds {LAYOUT}")
    records, bad = [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:  # utf-8-sig: a byte-order mark some editors write is not part of line 1
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                bad.append(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})")
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                bad.append(f"{path}:{lineno}: not valid JSON ({e.msg}, column {e.colno})")
                continue
            problem = _check_record(obj, fields, optional)
            if problem:
                bad.append(f"{path}:{lineno}: {problem}")
                continue
            rec = {k: obj[k] for k in fields + optional if k in obj}
            rec["_file"], rec["_line"] = path, lineno
            records.append(rec)
    if bad and not skip_bad_lines:
        more = f" (and {len(bad) - 1} more bad lines)" if len(bad) > 1 else ""
        raise DataError(bad[0] + more + "; fix the line, or pass --skip_bad_lines to drop "
                        "bad lines (they are counted)")
    if bad:
        print(f"warning: skipped {len(bad)} bad line(s) in {path}: "
              + "; ".join(bad[:MAX_REPORTED]) + (" ..." if len(bad) > MAX_REPORTED else ""))
    if not records:
        raise DataError(f"{path}: no examples (needs one JSON object a line with "
                        f"{', '.join(fields)})")
    return records


def _short(value, n=60):
    """repr of a prompt, a response or a returned value, cut for a one-line message."""
    r = repr(value)
    return r if len(r) <= n else r[:n - 3] + "..."


def checked_oracle(score, file):
    """score, checked on every call: it returns a finite float or raises a DataError naming
    oracle.py, the prompt and the response. Unchecked, a NaN became made-up win rates and
    ties with exit 0, and a string or an exception a traceback after training."""
    def checked(prompt, response):
        try:
            value = score(prompt, response)
        except Exception as e:
            raise DataError(f"{file}: score({_short(prompt)}, {_short(response)}) raised "
                            f"{type(e).__name__}: {_short(str(e), 120)}") from e
        if isinstance(value, numbers.Real) and not isinstance(value, bool) \
                and math.isfinite(value):
            return float(value)
        why = ("a bool; return float(...) if a 0/1 score is meant"
               if isinstance(value, bool) else "it must return a finite float")
        raise DataError(f"{file}: score({_short(prompt)}, {_short(response)}) returned "
                        f"{_short(value)} ({type(value).__name__}): {why}")
    return checked


def load_oracle(path):
    """The score(prompt, response) function of PATH/oracle.py, checked on every call
    (checked_oracle), or None if absent."""
    file = os.path.join(path, "oracle.py")
    if not os.path.isfile(file):
        return None
    name = "task_oracle_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise DataError(f"{file}: could not import it ({type(e).__name__}: {e})") from e
    if not callable(getattr(module, "score", None)):
        raise DataError(f"{file}: defines no function score(prompt, response)")
    return checked_oracle(module.score, file)


def probe_oracle(task):
    """Calls the oracle when the task loads, before any training: on a real prompt of the
    task (test.jsonl's first, else another file's), with one of the task's own responses
    and with an empty one (a policy may stop at once). A broken oracle is an error now,
    not after a whole run."""
    first = [getattr(task, n)[0] for n in ("test", "prompts", "sft", "pairs")
             if getattr(task, n)]
    own = [r[k] for r in first for k in ("response", "chosen") if k in r][:1]
    try:
        for response in own + [""]:
            task.oracle(first[0]["prompt"], response)
    except DataError as e:
        raise DataError(f"{e} (a trial call as the task loads, before any training)") from e


@dataclass
class Task:
    path: str
    sft: Optional[list] = None      # None when the file is absent
    pairs: Optional[list] = None
    prompts: Optional[list] = None
    test: Optional[list] = None
    oracle: Optional[Callable] = None  # score(prompt, response) -> float

    def require(self, name):
        """The records of NAME.jsonl, or a DataError saying which stage needs the file."""
        if name not in FILES:
            raise KeyError(f"unknown task file {name!r}; known: {', '.join(FILES)}")
        records = getattr(self, name)
        if records is None:
            req, opt, stage = FILES[name]
            raise DataError(f"{os.path.join(self.path, name + '.jsonl')} is missing: "
                            f"{stage} needs it (one JSON object a line with "
                            f"{', '.join(req)}{', optional ' + ', '.join(opt) if opt else ''})")
        return records

    def get_oracle(self):
        """The oracle, or None after saying that oracle metrics are skipped."""
        if self.oracle is None:
            print(f"no oracle.py in {self.path}: oracle metrics skipped")
        return self.oracle

    @property
    def tokenizer_file(self):
        """PATH/tokenizer.json if the folder has one, else None."""
        file = os.path.join(self.path, "tokenizer.json")
        return file if os.path.isfile(file) else None

    @property
    def principles(self):
        """Distinct 'principle' values of the pairs, in order of first appearance."""
        seen = {}
        for r in self.pairs or ():
            if "principle" in r:
                seen.setdefault(r["principle"], None)
        return tuple(seen)

    def texts(self):
        """Every text of the task, in file order, then the questions of the principles its
        judge prompts use: what a tokenizer is trained on."""
        out = []
        for name in FILES:
            for r in getattr(self, name) or ():
                for k, v in r.items():
                    if k.startswith("_"):
                        continue
                    # a rationale follows its response's letter: "B drops 7."
                    out.append({"rationale_chosen": "A ", "rationale_rejected": "B "}
                               .get(k, "") + v)
        return out + [principle_text(name) for name in ("default",) + self.principles]


def load_task(path, skip_bad_lines=False):
    """Loads a task folder; absent files give None (see Task.require)."""
    if not os.path.isdir(path):
        raise DataError(f"{path}: no such folder. A task folder holds {LAYOUT}")
    task = Task(path=path, oracle=load_oracle(path))
    for name, (req, opt, _) in FILES.items():
        file = os.path.join(path, name + ".jsonl")
        if os.path.isfile(file):
            setattr(task, name, read_jsonl(file, req, opt, skip_bad_lines))
    if all(getattr(task, name) is None for name in FILES):
        raise DataError(f"{path}: no task files found. A task folder holds {LAYOUT}")
    if task.oracle is not None:
        probe_oracle(task)
    return task


def prompt_start(path, n=100):
    """The text the first n prompts of a task folder all start with ("sort: "), read from
    the first of its files that has prompts: what tells one task from another (common.py's
    check_task). "" when they share nothing or no file can be read."""
    for name in FILES:
        try:
            with open(os.path.join(path, name + ".jsonl"), encoding="utf-8-sig") as f:
                prompts = [json.loads(line)["prompt"] for line, _ in zip(f, range(n))]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if prompts and all(isinstance(p, str) for p in prompts):
            return os.path.commonprefix(prompts)
    return ""


N_HELD_OUT_PAIRS = 256  # at most this many of the last pairs are held out


def n_held_out(n_pairs):
    """How many of the last pairs of pairs.jsonl are held out: jsft.py never trains on
    them, selfjudge.py's offline DPO leaves them out too, and evaluate.py scores the judge
    and the policies' implicit rewards on them."""
    return min(N_HELD_OUT_PAIRS, n_pairs // 10)


def check_lengths(records, lengths, max_len, what="example", skip=False):
    """Which records fit the context -> the indices of those that do.

    lengths[i]: how many tokens record i becomes as the model will see it (chat format,
    judge prompt, ...); `what` names the fields encoded, for the message, e.g.
    "prompt + response". Too long: DataError naming file and line, or with skip=True a
    warning and the record dropped.
    """
    keep, long = [], []
    for i, (r, n) in enumerate(zip(records, lengths)):
        if n > max_len:
            where = f"{r.get('_file', '?')}:{r.get('_line', '?')}"
            long.append(f"{where}: {what} is {n} tokens")
        else:
            keep.append(i)
    if not long:
        return keep
    msg = (f"{len(long)} of {len(records)} lines too long for the context "
           f"({max_len} tokens): " + "; ".join(long[:MAX_REPORTED])
           + (" ..." if len(long) > MAX_REPORTED else ""))
    if not skip:
        raise DataError(msg + ". Shorten them, drop them with --skip_bad_lines, or use a "
                        "longer context (jsft.py --block_size, from scratch)")
    print(f"warning: dropped {msg}")
    return keep


def fitting(records, examples, block_size, what, skip=False):
    """The examples (a list per record, each an (ids, targets) pair) of the records whose
    longest example fits the context; check_lengths names the file and line of the others."""
    longest = [max(len(x) for x, _ in ex) for ex in examples]
    return [examples[i] for i in check_lengths(records, longest, block_size, what, skip)]


def tokenized_pairs(rows, tok, block_size, what, skip=False):
    """Labelled pairs as the models read them, in the shape of a sampled pair: dicts of
    prompt, query (its ids in the chat format), chosen and rejected (each text and ids),
    for the rows whose query and longer response fit the context. The others are an error
    naming the line (check_lengths), or with skip dropped with a count: never cut."""
    pairs = [dict(prompt=r["prompt"], query=encode_query(tok, r["prompt"]),
                  chosen=dict(text=r["chosen"], ids=encode_response(tok, r["chosen"])),
                  rejected=dict(text=r["rejected"], ids=encode_response(tok, r["rejected"])))
             for r in rows]
    lengths = [len(x["query"]) + max(len(x["chosen"]["ids"]), len(x["rejected"]["ids"]))
               for x in pairs]
    return [pairs[i] for i in check_lengths(rows, lengths, block_size, what, skip)]


def training_pairs(task, tok, block_size, skip=False):
    """The labelled pairs of pairs.jsonl less the held-out tail (which evaluate.py scores),
    tokenized: offline DPO's pool, the paper's baseline (selfjudge.py --mode=offline)."""
    rows = task.require("pairs")
    pool = tokenized_pairs(rows[:len(rows) - n_held_out(len(rows))], tok, block_size,
                           "prompt + longer response", skip)
    if not pool:
        raise DataError(f"{task.path}/pairs.jsonl: no pairs left to train on")
    return pool


# -----------------------------------------------------------------------------
# tokenizer

def train_tokenizer(texts, vocab_size=512, special_tokens=CHAT_TOKENS):
    """Byte-level BPE trained on texts; deterministic for the same texts in the same
    order. Special tokens get ids 0, 1, 2, ...; every byte is in the vocabulary, so
    decode(encode(s)) == s and single characters such as "A" are one token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


# -----------------------------------------------------------------------------
# evaluation with an oracle (the paper's GPT-4 evaluator)

TIE_EPS = 1e-9


def _scores(score, prompts, responses):
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        raise ValueError("no prompts to score")
    return [score(p["prompt"] if isinstance(p, dict) else p, r)
            for p, r in zip(prompts, responses)]


def win_rate(score, prompts, responses_a, responses_b):
    """Oracle comparison of A against B, prompt by prompt -> dict(win, tie, loss,
    win_rate, tie_rate); win_rate excludes ties (0.5 when all are ties).
    None when score is None (a task without oracle)."""
    if score is None:
        return None
    if len(responses_a) != len(responses_b):
        raise ValueError(f"{len(responses_a)} responses A but {len(responses_b)} B")
    sa, sb = _scores(score, prompts, responses_a), _scores(score, prompts, responses_b)
    win = sum(a > b + TIE_EPS for a, b in zip(sa, sb))
    loss = sum(b > a + TIE_EPS for a, b in zip(sa, sb))
    tie = len(sa) - win - loss
    return dict(win=win, tie=tie, loss=loss,
                win_rate=win / (win + loss) if win + loss else 0.5, tie_rate=tie / len(sa))


def mean_score(score, prompts, responses):
    """Mean oracle score, or None without oracle."""
    if score is None:
        return None
    s = _scores(score, prompts, responses)
    return sum(s) / len(s)


def fully_right_rate(score, prompts, responses):
    """Fraction of responses with oracle score 1.0, or None without oracle."""
    if score is None:
        return None
    s = _scores(score, prompts, responses)
    return sum(x >= 1.0 for x in s) / len(s)
