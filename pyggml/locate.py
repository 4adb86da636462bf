"""Find a model where users keep it, offline: ``locate(spec) -> Located``.

    path/to/model.gguf             a file, or any shard of a split set
    path/to/Modelfile              an Ollama Modelfile: FROM (any spec here), PARAMETER, SYSTEM
    org/repo:file.gguf             a file in the local Hugging Face cache (a subfolder path too)
    org/repo:Q4_K_M                the file of that quantization in that repository
                                   (also written hf.co/org/repo:Q4_K_M, as Ollama does)
    ollama:qwen2.5:0.5b            a model pulled into the local Ollama store

Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``): ``models--org--repo/refs/main`` names the commit whose
files are under ``snapshots/<commit>/`` (links into ``blobs/``).  A split set
(``name-00001-of-00003.gguf``) resolves to its first shard once every shard is there.

Ollama store (``$OLLAMA_MODELS``, else ``~/.ollama/models``): the manifest
``manifests/registry.ollama.ai/library/NAME/TAG`` (TAG ``latest`` by default; ``ns/NAME``
and ``host/ns/NAME`` for others) lists layers by media type; the ``model`` layer is the
GGUF at ``blobs/sha256-<hex>``, the ``params`` layer JSON sampling defaults, the
``system`` layer a system message.  The ``template`` layer is a Go template, which
pyggml does not run: the GGUF's own chat template (Jinja) is used instead, as the
file's author wrote it.  For the same reason a Modelfile's TEMPLATE is refused by name.

Nothing here touches the network: a model that is not on disk is a UsageError that
says where it was looked for.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from pathlib import Path

from .errors import UsageError

OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_LAYER = "application/vnd.ollama.image."
HF_PREFIXES = ("hf.co/", "huggingface.co/")
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclasses.dataclass
class Located:
    path: Path                         # the GGUF file (first shard of a split set)
    name: str                          # the name to serve it under
    params: dict = dataclasses.field(default_factory=dict)   # Ollama option names
    system: str | None = None          # a default system message


def locate(spec: str, *, _seen: tuple = ()) -> Located:
    spec = str(spec)
    if spec.startswith("ollama:"):
        return _ollama(spec[len("ollama:"):])
    if spec.startswith(HF_PREFIXES):                 # Ollama's spelling of a Hugging Face model
        spec = spec.split("/", 1)[1]
    path = Path(spec).expanduser()
    if path.is_file():
        if _is_gguf(path):
            return Located(path, path.name)
        return _modelfile(path, _seen)
    if path.is_dir() and (path / "Modelfile").is_file():
        return _modelfile(path / "Modelfile", _seen)
    match = re.fullmatch(r"([\w.-]+/[\w.-]+):(.+)", spec)
    if match and not path.exists():
        return _huggingface(match[1], match[2])
    raise UsageError(f"{spec}: no such model file (give a path, org/repo:FILE or "
                     "org/repo:QUANT from the Hugging Face cache, ollama:NAME[:TAG], or a "
                     "Modelfile)", argument="model")


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


# ---------------------------------------------------------------------------- Hugging Face
def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "huggingface") / "hub"


def _huggingface(repo: str, what: str) -> Located:
    org, name = repo.split("/")
    folder = hf_cache_dir() / f"models--{org}--{name}"
    ref = folder / "refs" / "main"
    if not ref.is_file():
        raise UsageError(f"{repo}: not in the Hugging Face cache ({folder} has no refs/main; "
                         "download it first, e.g. with `hf download`)", argument="model")
    snapshot = folder / "snapshots" / ref.read_text().strip()
    files = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*.gguf"))
    if what.lower().endswith(".gguf"):
        if what not in files:
            raise UsageError(f"{repo}: no file {what} in its cached snapshot {snapshot} "
                             f"(it has: {', '.join(files) or 'no .gguf files'})", argument="model")
        first = what
    else:
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(what)}(?![A-Za-z0-9_])", re.I)
        candidates = sorted({SHARD.sub(".gguf", f) for f in files
                             if pattern.search(Path(f).name)})
        if len(candidates) != 1:
            found = ", ".join(candidates) if candidates else "none"
            raise UsageError(f"{repo}:{what}: {'no' if not candidates else 'more than one'} "
                             f"cached file of that quantization (matches: {found}; "
                             f"files: {', '.join(files) or 'none'})", argument="model")
        base = candidates[0]
        shards = [f for f in files if SHARD.sub(".gguf", f) == base and SHARD.search(f)]
        first = base if base in files else min(shards)
    match = SHARD.search(first)
    if match:                              # a split set: every shard must be in the cache
        count = int(match[2])
        stem = first[:match.start()]
        missing = [f"{stem}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)
                   if not (snapshot / f"{stem}-{i:05d}-of-{count:05d}.gguf").is_file()]
        if missing:
            raise UsageError(f"{repo}: shards missing from the cache: {', '.join(missing)}",
                             argument="model")
        first = f"{stem}-00001-of-{count:05d}.gguf"
    path = snapshot / first
    if not path.is_file():                 # a dangling link: the blob was removed
        raise UsageError(f"{repo}: {path} is in the cache's snapshot but its blob is missing",
                         argument="model")
    return Located(path, f"{repo}:{what}")


# ---------------------------------------------------------------------------- Ollama
def ollama_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


def _ollama(name: str) -> Located:
    base, _, tag = name.partition(":")
    parts = base.split("/")
    if not base or len(parts) > 3 or not all(parts):
        raise UsageError(f"ollama:{name}: expected ollama:NAME[:TAG]", argument="model")
    parts = {1: [OLLAMA_REGISTRY, "library"], 2: [OLLAMA_REGISTRY], 3: []}[len(parts)] + parts
    manifest = ollama_dir() / "manifests" / Path(*parts) / (tag or "latest")
    if not manifest.is_file():
        raise UsageError(f"ollama:{name}: not in the Ollama store (no manifest {manifest}; "
                         "`ollama pull` it first)", argument="model")
    try:
        layers = {layer["mediaType"].removeprefix(OLLAMA_LAYER): layer["digest"]
                  for layer in json.loads(manifest.read_text())["layers"]}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"ollama:{name}: manifest {manifest} is not an Ollama manifest "
                         f"({err})", argument="model") from None

    def blob(kind: str) -> Path | None:
        if kind not in layers:
            return None
        path = ollama_dir() / "blobs" / layers[kind].replace(":", "-")
        if not path.is_file():
            raise UsageError(f"ollama:{name}: its {kind} layer {path} is missing",
                             argument="model")
        return path
    model = blob("model")
    if model is None:
        raise UsageError(f"ollama:{name}: the manifest has no model layer", argument="model")
    params = blob("params")
    system = blob("system")
    return Located(model, f"{base}:{tag or 'latest'}",
                   json.loads(params.read_text()) if params else {},
                   system.read_text() if system else None)


# ---------------------------------------------------------------------------- Modelfile
def _modelfile_commands(text: str, path: Path):
    """(COMMAND, argument) pairs; an argument in triple quotes may span lines."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        command, _, arg = line.partition(" ")
        arg = arg.strip()
        if arg.startswith('"""'):
            body = arg[3:]
            while '"""' not in body:
                if i >= len(lines):
                    raise UsageError(f"{path}: {command.upper()}: unterminated \"\"\"",
                                     argument="model")
                body += "\n" + lines[i]
                i += 1
            arg = body[:body.index('"""')]
        elif len(arg) >= 2 and arg[0] == arg[-1] == '"':
            arg = arg[1:-1]
        yield command.upper(), arg


def _parameter_value(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _modelfile(path: Path, seen: tuple) -> Located:
    if path.resolve() in seen:
        raise UsageError(f"{path}: FROM leads back to itself", argument="model")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: neither a GGUF file nor a Modelfile", argument="model") from None
    base = None
    params: dict = {}
    system = None
    for command, arg in _modelfile_commands(text, path):
        if command == "FROM":
            source = Path(arg).expanduser()
            if not source.is_absolute() and (path.parent / source).exists():
                source = path.parent / source
            # as Ollama reads FROM: a path, else a model name (hf.co/org/repo:QUANT included)
            spec = (str(source) if source.exists() else
                    arg if arg.startswith(("ollama:",) + HF_PREFIXES) else f"ollama:{arg}")
            base = locate(spec, _seen=seen + (path.resolve(),))
        elif command == "PARAMETER":
            key, _, value = arg.partition(" ")
            value = _parameter_value(value.strip().strip('"'))
            if key == "stop":
                params.setdefault("stop", []).append(value)
            else:
                params[key] = value
        elif command == "SYSTEM":
            system = arg
        elif command == "TEMPLATE":
            raise UsageError(f"{path}: TEMPLATE is a Go template, which pyggml does not run; "
                             "remove it to use the GGUF's own chat template", argument="model")
        elif command == "LICENSE":
            continue
        else:
            raise UsageError(f"{path}: {command} {shlex.quote(arg[:40])}: not supported "
                             "(FROM, PARAMETER, SYSTEM and LICENSE are)", argument="model")
    if base is None:
        raise UsageError(f"{path}: a Modelfile needs a FROM line", argument="model")
    return Located(base.path, path.parent.name if path.name == "Modelfile" else path.stem,
                   {**base.params, **params}, system if system is not None else base.system)
