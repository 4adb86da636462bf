"""``pyggml tokenize``: a text's tokens, printed as llama.cpp's llama-tokenize prints them.

    pyggml tokenize MODEL "Hello world"            one line per token: "  9707 -> 'Hello'"
    pyggml tokenize MODEL "Hello world" --ids      [9707, 1879]
    pyggml tokenize MODEL --stdin < prompt.txt     the whole of standard input

As llama-tokenize: the BOS token when the vocabulary asks for it (--no-bos to leave it
out), special tokens left as text unless --parse-special, pieces printed with their
special text.  MODEL may be any GGUF with a vocabulary, vocabulary-only files included.
"""
from __future__ import annotations

import sys

from ..errors import UsageError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("tokenize", help="print the tokens of a text",
                              description="Print the tokens of a text as llama.cpp's "
                                          "llama-tokenize does.")
    p.add_argument("model", metavar="MODEL", help="a GGUF file with a vocabulary (any shard)")
    p.add_argument("text", metavar="TEXT", nargs="?", help="the text (or --stdin / --file)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--stdin", action="store_true", help="tokenize standard input")
    source.add_argument("-f", "--file", metavar="PATH", help="tokenize a file's bytes")
    p.add_argument("--ids", action="store_true", help="print only the ids, as a list")
    p.add_argument("--no-bos", action="store_true", help="do not add the BOS token")
    p.add_argument("--parse-special", action="store_true",
                   help="turn special-token texts such as <|im_end|> into their tokens")
    p.add_argument("--show-count", action="store_true", help="print the number of tokens")
    p.set_defaults(run=run_tokenize)


def _text_bytes(args) -> bytes:
    """The text as the user's bytes (the tokenizer reads them as llama.cpp does)."""
    given = [args.text is not None, args.stdin, args.file is not None]
    if sum(given) != 1:
        raise UsageError("give the text as TEXT, --stdin or --file PATH (one of them)")
    if args.stdin:
        if sys.stdin is None:
            raise UsageError("--stdin: standard input is closed")
        return sys.stdin.buffer.read()
    if args.file is not None:
        try:
            with open(args.file, "rb") as f:
                return f.read()
        except OSError as err:
            raise UsageError(f"--file {args.file}: {err.strerror or err}") from None
    return args.text.encode(sys.getfilesystemencoding(), "surrogateescape")


def run_tokenize(args) -> int:
    import pyggml
    data = _text_bytes(args)
    tokenizer = pyggml.load_tokenizer(args.model)
    # llama-tokenize: add_special = the vocabulary's add_bos, unless --no-bos (EOS goes with it)
    ids = tokenizer.encode(data, add_special=tokenizer.add_bos and not args.no_bos,
                           parse_special=args.parse_special)
    out = sys.stdout.buffer
    if args.ids:
        out.write(f"[{', '.join(map(str, ids))}]\n".encode())
    else:
        for token in ids:
            out.write(f"{token:6d} -> '".encode() + tokenizer.token_to_piece(token, special=True)
                      + b"'\n")
    if args.show_count:
        out.write(f"Total number of tokens: {len(ids)}\n".encode())
    return 0
