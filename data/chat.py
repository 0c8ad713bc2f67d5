"""The chat format: how a prompt and a response become token ids, in one place.

    <|user|> prompt <|end|> <|assistant|> response <|end|>
    \\______ encode_query(tok, prompt) ______/ \\_ encode_response _/

encode_query ends exactly where the response starts; the stop token <|end|> belongs to
the response (it is scored and trained, or the policy never learns to stop), and
decode_response cuts sampled ids at it. Every stage uses these functions, and the judge
prompt (judge.py) is one more user turn in the same format.
Imports nothing from the rest of the project.
"""
import os

CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")


def load_tokenizer(path, chat=True):
    """A `tokenizers.Tokenizer` from tokenizer.json (or a folder holding one). With chat,
    the chat tokens are added as special tokens when the file lacks them (e.g. GPT-2's);
    the model then needs `resize_vocab(tok.get_vocab_size())`."""
    from tokenizers import Tokenizer
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file}: tokenizer file not found")
    try:
        tok = Tokenizer.from_file(file)
    except Exception as e:
        raise ValueError(f"{file}: not a Hugging Face tokenizers file: {e}") from None
    return add_chat_tokens(tok) if chat else tok


def add_chat_tokens(tok):
    missing = [t for t in CHAT_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens(missing)
    return tok


def chat_ids(tok):
    """(user, assistant, end) token ids; end is the stop token of every response."""
    return tuple(tok.token_to_id(t) for t in CHAT_TOKENS)


def encode_query(tok, prompt):
    """<|user|> prompt <|end|> <|assistant|>: ends exactly where the response starts."""
    user, assistant, end = chat_ids(tok)
    return [user] + tok.encode(prompt, add_special_tokens=False).ids + [end, assistant]


def encode_response(tok, response):
    """A response's ids followed by the stop token <|end|>, which belongs to the response."""
    return tok.encode(response, add_special_tokens=False).ids + [chat_ids(tok)[2]]


def decode_response(tok, ids):
    """Sampled ids -> text, cut at the first stop token."""
    end = chat_ids(tok)[2]
    ids = list(ids)
    if end in ids:
        ids = ids[:ids.index(end)]
    return tok.decode(ids, skip_special_tokens=True)
