"""Imports Anthropic HH-RLHF preference data into a task folder.

    python -m data.hh IN.jsonl OUT_DIR [--test_frac 0.05] [--prompts_frac 0.1] [--seed 1337]
                                       [--replace]

IN.jsonl (or .jsonl.gz) holds lines {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...",
"rejected": "..."}. The shared text up to and including the last "\\n\\nAssistant:" is
the prompt (earlier turns stay in it as text); what follows it in each string,
stripped of surrounding whitespace, is the chosen or the rejected response.
Lines that do not parse are skipped and counted by reason; an input with no usable line
is an error, and nothing is written. OUT_DIR must be new or empty: with --replace, a task
folder there is replaced whole (its files go, an oracle.py and tokenizer.json included).

Each distinct prompt goes to one split, by a hash of the seed and the prompt (so a
prompt that occurs twice never lands in two splits):
    test.jsonl     prompt                       test_frac of the prompts
    prompts.jsonl  prompt                       prompts_frac of the prompts (on-policy)
    pairs.jsonl    prompt, chosen, rejected     the rest
    sft.jsonl      prompt, response (= chosen)  the rest
No tokenizer.json is written: the trainers train one from the folder's text.
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections import Counter

from data.task import FILES

MARK = "\n\nAssistant:"
# what a task folder may hold (docs/design.md): --replace removes these and nothing else
TASK_FILES = {name + ".jsonl" for name in FILES} | {"tokenizer.json", "oracle.py", "__pycache__"}


def split_example(obj):
    """One parsed HH line -> (prompt, chosen, rejected), or a string saying what is wrong."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    for k in ("chosen", "rejected"):
        if not isinstance(obj.get(k), str):
            return f"no string field '{k}'"
    ends = []
    for k in ("chosen", "rejected"):
        i = obj[k].rfind(MARK)
        if i < 0:
            return f"no '\\n\\nAssistant:' turn in '{k}'"
        ends.append(i + len(MARK))
    prompt = obj["chosen"][:ends[0]]
    if ends[0] != ends[1] or obj["rejected"][:ends[1]] != prompt:
        return "chosen and rejected do not share the prompt"
    chosen, rejected = obj["chosen"][ends[0]:].strip(), obj["rejected"][ends[1]:].strip()
    if not chosen or not rejected:
        return "empty last assistant turn"
    if chosen == rejected:
        return "chosen and rejected are identical"
    return prompt, chosen, rejected


def bucket(prompt, seed):
    """A number in [0, 1) fixed by the seed and the prompt."""
    h = hashlib.sha256(f"{seed}\n{prompt}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


def lines_of(f, path):
    """f's lines; a corrupt or truncated .gz is an OSError naming the file."""
    try:
        yield from f
    except (OSError, EOFError) as e:
        raise OSError(f"{path}: could not read it ({type(e).__name__}: {e})") from None


def check_target(out_dir, replace=False):
    """Refuse, before reading the input, a folder with files in it: the import would leave
    another task's oracle.py or tokenizer.json beside the new data. With replace, still
    refuse one holding anything but a task's files: those are not the import's to delete."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"{out_dir}: a file, not a folder; name a new folder")
    present = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    others = [n for n in present if n not in TASK_FILES]
    if present and not replace:
        raise FileExistsError(f"{out_dir}: not empty (it holds {', '.join(present[:6])}"
                              f"{', ...' if len(present) > 6 else ''}): the new task's files "
                              "would mix with these; name a new folder, or pass --replace to "
                              "replace the task there")
    if others:
        raise FileExistsError(f"{out_dir}: holds {', '.join(others[:6])} beside a task's "
                              "files, and --replace replaces a task folder only: move those "
                              "away, or name a new folder")


def write_files(out_dir, files):
    """files: {name: records}. Written to a temporary folder beside out_dir, then moved in
    place of whatever task files out_dir held, so a failed write leaves it as it was."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".hh-import-", dir=parent)
    try:
        for name, records in files.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8", newline="\n") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.makedirs(out_dir, exist_ok=True)
        for name in set(os.listdir(out_dir)) & TASK_FILES:  # check_target allowed these
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        for name in files:
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert(in_path, out_dir, test_frac=0.05, prompts_frac=0.10, seed=1337, replace=False):
    """Writes the task folder; returns a dict of counts (one per file, plus skipped).
    An input without one usable pair is a ValueError, and nothing is written; so is a
    folder with files in it, unless replace (see check_target)."""
    check_target(out_dir, replace)
    if not os.path.isfile(in_path):
        raise FileNotFoundError(f"{in_path}: no such file (pass an HH-RLHF .jsonl or .jsonl.gz)")
    opener = gzip.open if in_path.endswith(".gz") else open
    examples, skipped, first_bad, n_lines = [], Counter(), [], 0
    with opener(in_path, "rb") as f:
        for lineno, raw in enumerate(lines_of(f, in_path), start=1):
            if not raw.strip():
                continue
            n_lines += 1
            try:
                got = split_example(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                got = "not valid JSON"
            if isinstance(got, str):
                skipped[got] += 1
                if len(first_bad) < 3:
                    first_bad.append(f"line {lineno}: {got}")
            else:
                examples.append(got)
    if not examples:
        raise ValueError(f"{in_path}: no usable pair in {n_lines} non-blank lines"
                         + (" (" + ", ".join(f"{n} {why}" for why, n in skipped.most_common())
                            + "; first: " + "; ".join(first_bad) + ")" if skipped else "")
                         + f"; nothing written to {out_dir}")

    test, prompts, pairs, seen = [], [], [], set()
    for prompt, chosen, rejected in examples:
        u = bucket(prompt, seed)
        if u < test_frac + prompts_frac:  # prompt-only splits: each prompt once
            if prompt not in seen:
                seen.add(prompt)
                (test if u < test_frac else prompts).append({"prompt": prompt})
        else:
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    sft = [{"prompt": r["prompt"], "response": r["chosen"]} for r in pairs]

    counts, files = {}, {}
    for name, records in (("sft", sft), ("pairs", pairs), ("prompts", prompts), ("test", test)):
        counts[name] = len(records)
        if not records:  # an empty file would not load; an absent one says who needs it
            print(f"warning: no examples for {name}.jsonl (too few input lines?): not written")
        else:
            files[name + ".jsonl"] = records
    write_files(out_dir, files)
    counts["skipped"] = sum(skipped.values())
    print(f"read {n_lines} lines from {in_path}: {len(examples)} pairs, "
          f"skipped {counts['skipped']}"
          + (" (" + ", ".join(f"{n} {why}" for why, n in skipped.most_common()) + "; first: "
             + "; ".join(first_bad) + ")" if skipped else ""))
    print("wrote " + ", ".join(f"{name}.jsonl {counts[name]}" for name in
                               ("sft", "pairs", "prompts", "test")) + f" to {out_dir}")
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description="Anthropic HH-RLHF JSONL -> task folder")
    ap.add_argument("in_path", help="HH-RLHF .jsonl or .jsonl.gz")
    ap.add_argument("out_dir", help="task folder to write")
    ap.add_argument("--test_frac", type=float, default=0.05, help="share of prompts held out")
    ap.add_argument("--prompts_frac", type=float, default=0.10, help="share for on-policy prompts")
    ap.add_argument("--seed", type=int, default=1337, help="seeds the split")
    ap.add_argument("--replace", action="store_true",
                    help="replace the task in a folder that holds one (its files go)")
    args = ap.parse_args(argv)
    if not (args.test_frac >= 0 and args.prompts_frac >= 0
            and args.test_frac + args.prompts_frac < 1):
        ap.error(f"--test_frac={args.test_frac} and --prompts_frac={args.prompts_frac}: each "
                 "at least 0, and together under 1 (the rest are the training pairs)")
    print(f"in_path={args.in_path} out_dir={args.out_dir} test_frac={args.test_frac} "
          f"prompts_frac={args.prompts_frac} seed={args.seed} replace={args.replace}")
    try:
        convert(args.in_path, args.out_dir, args.test_frac, args.prompts_frac, args.seed,
                args.replace)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
