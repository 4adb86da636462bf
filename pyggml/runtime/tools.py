"""Tool calls: the request's ``tools`` in the chat template's own words, and the calls the
model wrote parsed back into OpenAI's ``tool_calls``.

Each model family writes its calls its own way; the format is recognised from the
template's source, as llama.cpp's common/chat.cpp recognises it:

    hermes     Qwen2.5, Qwen3, Hermes: <tool_call>{"name": ..., "arguments": {...}}</tool_call>,
               after optional text, one block per call
    llama3     Llama 3.1/3.2/3.3: the whole reply is {"name": ..., "parameters": {...}}
    mistral    Mistral Nemo: [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...];
               Mistral Small 3.2, Devstral: [TOOL_CALLS]name[ARGS]{...}, per call
    generic    a template that knows no tools: they are described in a system message and
               the reply is always JSON, {"tool_call": {"name", "arguments"}} or
               {"response": "..."} (the grammar enforces it, as llama.cpp's generic format)

With tool_choice "required" or a named function the reply is constrained through the
grammar engine (grammar.py) to the format's calls of the allowed tools, each one's
arguments valid against its JSON schema, so it always parses.  With "auto" the model
writes what it likes and text that does not parse as a call stays content.  As in
llama-server, ``parallel_tool_calls`` defaults to false: one call per reply.
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import string

from ..errors import UsageError
from .grammar import Grammar

_DECODER = json.JSONDecoder()


@dataclasses.dataclass
class ToolCall:
    name: str
    arguments: str                   # a JSON text, as OpenAI sends it
    id: str

    def openai(self, index: int | None = None) -> dict:
        call = {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}
        return call if index is None else {"index": index, **call}

    def ollama(self) -> dict:
        return {"function": {"name": self.name, "arguments": json.loads(self.arguments)}}


def _call_id(length: int = 0) -> str:
    if length:                       # Mistral's templates insist on 9 letters and digits
        return "".join(secrets.choice(string.ascii_letters + string.digits)
                       for _ in range(length))
    return f"call_{secrets.token_hex(12)}"


def _json_at(text: str, at: int):
    """The JSON value starting at text[at] (after spaces) and where it ends; None if none."""
    while at < len(text) and text[at].isspace():
        at += 1
    try:
        return _DECODER.raw_decode(text, at)
    except ValueError:
        return None


def _partial_marker(text: str, marker: str) -> int | None:
    """Where marker, or the start of it at the very end of text, begins."""
    at = text.find(marker)
    if at >= 0:
        return at
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return len(text) - n
    return None


def _json(schema: dict) -> str:
    """A JSON value in a Lark grammar: compact, as the templates write their examples (with
    whitespace free, a model can pad a call with it until max_tokens)."""
    options = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
    return f"%json {json.dumps({**schema, 'x-guidance': options})}"


def _token(tokenizer, text: str) -> str:
    """text in a Lark grammar: the one (control) token it is, as llguidance names a token
    by id, or else the string."""
    ids = tokenizer.encode(text, add_special=False, parse_special=True)
    return f"<[{ids[0]}]>" if len(ids) == 1 else json.dumps(text)


# ---------------------------------------------------------------------------- formats
class ToolFormat:
    name = ""
    arguments_key = "arguments"
    id_length = 0
    markers: tuple[str, ...] = ()            # control tokens that must reach the parser as text

    def messages(self, messages: list[dict], tools: list[dict]) -> list[dict]:
        """The conversation as the template gets it (generic adds its system message)."""
        return messages

    def hold_from(self, text: str) -> int | None:
        """Where a tool call may begin in text so far: a stream holds the rest back."""
        raise NotImplementedError

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """(content, calls); text that does not parse as calls is content."""
        raise NotImplementedError

    def lark(self, tools: list[dict], parallel: bool, tokenizer) -> str:
        """A llguidance Lark grammar of one (or, parallel, several) calls of tools."""
        raise NotImplementedError

    def call_schema(self, tool: dict) -> dict:
        function = tool["function"]
        return {"type": "object", "additionalProperties": False,
                "properties": {"name": {"const": function["name"]},
                               self.arguments_key: function.get("parameters")
                               or {"type": "object"}},
                "required": ["name", self.arguments_key]}

    def any_call(self, tools: list[dict]) -> dict:
        return {"anyOf": [self.call_schema(tool) for tool in tools]}

    def _call(self, value) -> ToolCall | None:
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            return None
        arguments = value.get(self.arguments_key, value.get("arguments", {}))
        if isinstance(arguments, str):           # some models write the JSON as a string
            try:
                json.loads(arguments)
            except ValueError:
                return None
        else:
            arguments = json.dumps(arguments, ensure_ascii=False)
        return ToolCall(value["name"], arguments, _call_id(self.id_length))


class HermesFormat(ToolFormat):
    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def hold_from(self, text):
        return _partial_marker(text, self.OPEN)

    def parse(self, text):
        start = text.find(self.OPEN)
        if start < 0:
            return text, []
        calls, at = [], start
        while at < len(text):
            if not text.startswith(self.OPEN, at):
                if text[at:].strip():
                    return text, []             # something else after a call: not calls
                break
            found = _json_at(text, at + len(self.OPEN))
            call = found and self._call(found[0])
            if not call:
                return text, []
            calls.append(call)
            at = found[1]
            while at < len(text) and text[at].isspace():
                at += 1
            if text.startswith(self.CLOSE, at):
                at += len(self.CLOSE)
            while at < len(text) and text[at].isspace():
                at += 1
        return text[:start].rstrip(), calls

    def lark(self, tools, parallel, tokenizer):
        call = f'"{self.OPEN}\\n" {_json(self.any_call(tools))} "\\n{self.CLOSE}"'
        return (f"start: call (\"\\n\" call)*\ncall: {call}\n" if parallel
                else f"start: {call}\n")


class Llama3Format(ToolFormat):
    """The reply is the call itself, a JSON object."""
    name = "llama3"
    arguments_key = "parameters"

    def hold_from(self, text):
        stripped = text.lstrip()
        return len(text) - len(stripped) if not stripped or stripped[0] == "{" else None

    def parse(self, text):
        found = _json_at(text, 0)
        if found is None or text[found[1]:].strip():
            return text, []
        call = self._call(found[0])
        return ("", [call]) if call else (text, [])

    def lark(self, tools, parallel, tokenizer):
        return f"start: {_json(self.any_call(tools))}\n"   # one call per reply


class MistralFormat(ToolFormat):
    """[TOOL_CALLS] then a JSON array of calls (Nemo), or name[ARGS]{...} per call (Small
    3.2, Devstral: ``args`` true)."""
    name = "mistral"
    id_length = 9
    TOOL_CALLS, ARGS = "[TOOL_CALLS]", "[ARGS]"

    def __init__(self, args: bool):
        self.args = args
        self.markers = (self.TOOL_CALLS, self.ARGS) if args else (self.TOOL_CALLS,)

    def hold_from(self, text):
        return _partial_marker(text, self.TOOL_CALLS)

    def parse(self, text):
        start = text.find(self.TOOL_CALLS)
        if start < 0:
            return text, []
        calls = []
        if self.args:
            for part in text[start:].split(self.TOOL_CALLS)[1:]:
                name, sep, arguments = part.partition(self.ARGS)
                found = _json_at(arguments, 0) if sep else None
                if not found or arguments[found[1]:].strip():
                    return text, []
                calls.append(self._call({"name": name.strip(), "arguments": found[0]}))
        else:
            found = _json_at(text, start + len(self.TOOL_CALLS))
            if not found or not isinstance(found[0], list) or text[found[1]:].strip():
                return text, []
            calls = [self._call(value) for value in found[0]]
        if not calls or None in calls:
            return text, []
        return text[:start].rstrip(), calls

    def lark(self, tools, parallel, tokenizer):
        tool_calls, args = (_token(tokenizer, m) for m in (self.TOOL_CALLS, self.ARGS))
        if self.args:
            calls = " | ".join(
                f'"{t["function"]["name"]}" {args} '
                f'{_json(t["function"].get("parameters") or {"type": "object"})}'
                for t in tools)
            call = f"{tool_calls} ({calls})"
            return (f"start: call+\ncall: {call}\n" if parallel else f"start: {call}\n")
        items = {"type": "array", "items": self.any_call(tools), "minItems": 1}
        if not parallel:
            items["maxItems"] = 1
        return f"start: {tool_calls} {_json(items)}\n"


class GenericFormat(ToolFormat):
    """For templates that know no tools: llama.cpp's generic format."""
    name = "generic"

    def messages(self, messages, tools):
        prompt = ("You can call any of the following tools to satisfy the user's requests: "
                  + json.dumps([t["function"] for t in tools], indent=2, ensure_ascii=False)
                  + "\n\nRespond in JSON format, either with `tool_call` (a request to call "
                    "a tool) or with `response` (a reply to the user's request).")
        if messages and messages[0].get("role") == "system":
            return [{**messages[0], "content": messages[0]["content"] + "\n\n" + prompt},
                    *messages[1:]]
        return [{"role": "system", "content": prompt}, *messages]

    def hold_from(self, text):
        return 0

    def parse(self, text):
        found = _json_at(text, 0)
        value = found[0] if found and not text[found[1]:].strip() else None
        if isinstance(value, dict):
            if isinstance(value.get("response"), str):
                return value["response"], []
            many = value.get("tool_calls", [value.get("tool_call")])
            calls = [self._call(v) for v in many] if isinstance(many, list) else []
            if calls and None not in calls:
                return "", calls
        return text, []

    def schema(self, tools, parallel, required) -> dict:
        if parallel:
            call = {"tool_calls": {"type": "array", "items": self.any_call(tools),
                                   "minItems": 1}}
        else:
            call = {"tool_call": self.any_call(tools)}
        options = [{"type": "object", "properties": call, "required": list(call),
                    "additionalProperties": False}]
        if not required:
            options.append({"type": "object", "properties": {"response": {"type": "string"}},
                            "required": ["response"], "additionalProperties": False})
        return {"anyOf": options}

    def lark(self, tools, parallel, tokenizer):
        return f"start: {_json(self.schema(tools, parallel, True))}\n"


def tool_format(template_source: str) -> ToolFormat:
    """The format a chat template's model writes its tool calls in."""
    if "<tool_call>" in template_source:
        return HermesFormat()
    if MistralFormat.TOOL_CALLS in template_source:
        return MistralFormat(args=MistralFormat.ARGS in template_source)
    if "<|start_header_id|>" in template_source and '"parameters"' in template_source:
        return Llama3Format()
    return GenericFormat()


# ---------------------------------------------------------------------------- requests
@dataclasses.dataclass
class ToolUse:
    """A request's tools, checked: the template's format and, unless "auto", the grammar
    that forces a call."""
    tools: list[dict]
    format: ToolFormat
    choice: str                       # "auto" | "required" (a named function is required)
    parallel: bool
    grammar: Grammar | None = None

    def template_tools(self) -> list[dict] | None:
        return None if isinstance(self.format, GenericFormat) else self.tools


def _check_tools(tools) -> list[dict]:
    if not isinstance(tools, list) or not tools:
        raise UsageError("tools: expected a non-empty array of {\"type\": \"function\", "
                         "\"function\": {...}} objects", argument="tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (isinstance(tool, dict) and tool.get("type", "function") == "function"
                and isinstance(function, dict) and isinstance(function.get("name"), str)
                and function["name"]):
            raise UsageError(f"{where}: expected {{\"type\": \"function\", \"function\": "
                             "{\"name\": ..., \"parameters\": {...}}}", argument=where)
        if not isinstance(function.get("parameters", {}), dict):
            raise UsageError(f"{where}.function.parameters: expected a JSON schema object",
                             argument=f"{where}.function.parameters")
        out.append({"type": "function", "function": function})
    return out


def tool_use(tokenizer, template_source: str, tools, tool_choice=None,
             parallel_tool_calls=None, *, compile_grammar: bool = True) -> ToolUse | None:
    """A request's tools/tool_choice/parallel_tool_calls checked (UsageError naming the
    field); None when the reply is plain text.  compile_grammar=False: only the prompt is
    wanted (/apply-template)."""
    if tools is None or tool_choice == "none":
        return None
    tools = _check_tools(tools)
    if parallel_tool_calls is None:
        parallel_tool_calls = False
    if not isinstance(parallel_tool_calls, bool):
        raise UsageError("parallel_tool_calls: expected a boolean",
                         argument="parallel_tool_calls")
    choice = tool_choice or "auto"
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" \
            else None
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            raise UsageError(f"tool_choice: {json.dumps(choice)} names no function in tools",
                             argument="tool_choice")
        allowed, choice = chosen, "required"
    elif choice in ("auto", "required"):
        allowed = tools
    else:
        raise UsageError(f"tool_choice {choice!r}: expected \"none\", \"auto\", \"required\" "
                         "or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                         argument="tool_choice")
    fmt = tool_format(template_source)
    use = ToolUse(tools, fmt, choice, parallel_tool_calls)
    if not compile_grammar:
        return use
    if choice == "required":
        use.grammar = Grammar.lark(tokenizer, fmt.lark(allowed, parallel_tool_calls, tokenizer),
                                   argument="tools")
    elif isinstance(fmt, GenericFormat):            # generic replies are always JSON
        use.grammar = Grammar.json(tokenizer, fmt.schema(tools, parallel_tool_calls, False),
                                   argument="tools")
    return use


class ToolStream:
    """A reply's text as it comes: what may be shown at once, and at the end the content
    left to show and the calls."""

    def __init__(self, fmt: ToolFormat):
        self.format = fmt
        self.text = ""
        self.shown = 0

    def add(self, text: str) -> str:
        self.text += text
        hold = self.format.hold_from(self.text)
        end = len(self.text) if hold is None else max(hold, self.shown)
        out, self.shown = self.text[self.shown:end], end
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(the content not shown yet, the calls)."""
        content, calls = self.format.parse(self.text)
        return content[self.shown:], calls
