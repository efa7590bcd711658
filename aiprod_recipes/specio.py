"""Reading a recipe file into a Spec, reporting every error with its file and dotted key.

msgspec stops at the first error it meets. A person fixing a recipe wants them all at once,
so the document is first checked field by field against the Struct types (unknown keys,
types, ``Meta`` constraints), and only when that is clean is the whole document decoded,
which runs the cross-field rules in ``__post_init__``.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import msgspec
import tomlkit
import tomllib

from aiprod_recipes.names import SPEC_FILE
from aiprod_recipes.spec import PATTERN_MEANINGS, Spec, SpecRuleError

DEFAULT_SPEC = Path(SPEC_FILE)
"""The spec a command reads when none is named."""


class InvalidSpec(Exception):
    """One or more problems in a recipe file; ``errors`` holds one line per problem."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__("\n".join(f"{self.path}: {e}" for e in errors))


_AT = re.compile(r"\s*-\s*at `\$(?P<path>[^`]*)`$")


_RULE_LINE = re.compile(r"^[a-z_]+(\.[a-z_0-9\[\]]+)*: ")
_PATTERN = re.compile(r"^expected `str` matching regex (?P<regex>'.*')$", re.DOTALL)
_STEP = re.compile(r"\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<index>[0-9]+)\]")


def _at(value: Any, sub: str) -> Any:
    """The part of ``value`` that msgspec's location ``sub`` (".a[0].b") points at."""
    for m in _STEP.finditer(sub):
        try:
            value = value[int(m["index"])] if m["index"] is not None else value[m["name"]]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _explained(text: str, value: Any) -> str:
    """msgspec's wording, made plain where it only names a regex or a float bound."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number (got {value!r})"
    m = _PATTERN.match(text)
    if m:
        meaning = {repr(p): why for p, why in PATTERN_MEANINGS.items()}.get(m["regex"])
        if meaning:
            return f"{meaning} (got {value!r})"
    return text


def _msgspec_messages(err: msgspec.ValidationError, prefix: str, value: Any = None) -> list[str]:
    """Turn msgspec's "Expected ... - at `$.a.b`" into "a.b: expected ... (got ...)".

    Errors raised by our own cross-field rules already start with their dotted key; msgspec
    wraps them with the location of the Struct, which is dropped.
    """
    text = str(err)
    m = _AT.search(text)
    sub = m.group("path") if m else ""
    if m:
        text = text[: m.start()]
    if _RULE_LINE.match(text):
        return text.splitlines()
    key = (prefix + sub).lstrip(".") or "(top level)"
    text = text.replace("Object contains unknown field", "unknown key")
    text = text[0].lower() + text[1:] if text else "invalid value"
    leaf = _at(value, sub)
    explained = _explained(text, leaf)
    if explained != text:
        return [f"{key}: {explained}"]
    if ", got" not in text and leaf is not None and not isinstance(leaf, dict | list):
        text += f" (got {leaf!r})"
    return [f"{key}: {text}"]


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    """The plain (untagged) Struct type behind an annotation, if any."""
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp if tp.__struct_config__.tag is None else None
    return None


def _tags(tp: Any) -> list[str]:
    """The tags of a tagged union of Structs (the values its ``type`` key accepts)."""
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    members = get_args(tp)
    return [str(m.__struct_config__.tag) for m in members
            if isinstance(m, type) and issubclass(m, msgspec.Struct) and m.__struct_config__.tag]


def _with_allowed_tags(lines: list[str], tp: Any) -> list[str]:
    """A wrong or missing ``type`` in a tagged union: say which types exist."""
    tags = _tags(tp)
    if not tags:
        return lines
    return [f"{line}; allowed types: {', '.join(repr(t) for t in tags)}"
            if ".type:" in line or "`type`" in line else line for line in lines]


def _field_errors(cls: type[msgspec.Struct], doc: Any, prefix: str) -> list[str]:
    """Check ``doc`` against ``cls`` field by field, collecting every error."""
    if not isinstance(doc, dict):
        return [f"{prefix or '(top level)'}: expected a table, got {type(doc).__name__}"]
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    errors = [
        f"{prefix}{key}: unknown key; allowed keys: {', '.join(sorted(fields))}"
        for key in doc
        if key not in fields
    ]
    for name, field in fields.items():
        key = prefix + name
        if name not in doc:
            if field.required:
                errors.append(f"{key}: required key is missing")
            continue
        sub = _struct_of(field.type)
        if sub is not None:
            sub_errors = _field_errors(sub, doc[name], key + ".")
            errors.extend(sub_errors)
            if sub_errors:
                continue
        try:
            msgspec.convert(doc[name], field.type, strict=True)
        except msgspec.ValidationError as e:
            errors.extend(_with_allowed_tags(_msgspec_messages(e, key, doc[name]), field.type))
        except SpecRuleError as e:
            errors.extend(e.problems)
    return errors


def decode_spec(doc: dict[str, Any], source: str = "<spec>") -> Spec:
    """Decode a parsed TOML document into a Spec; raises InvalidSpec naming ``source``."""
    return _decode(doc, source)


def _decode(doc: dict[str, Any], path: str) -> Spec:
    errors = _field_errors(Spec, doc, "")
    if errors:
        raise InvalidSpec(path, errors)
    try:
        return msgspec.convert(doc, Spec, strict=True)
    except SpecRuleError as e:
        raise InvalidSpec(path, e.problems) from None
    except msgspec.ValidationError as e:
        raise InvalidSpec(path, _msgspec_messages(e, "")) from None


_WIDE_BOMS = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
              codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16"}


def spec_text(raw: bytes) -> str:
    """The text of a recipe file, which TOML requires to be UTF-8 (a UTF-8 byte-order mark,
    as some editors write, is dropped). Raises ValueError saying what the bytes are."""
    for bom, name in _WIDE_BOMS.items():  # UTF-32 first: its LE mark starts like UTF-16's
        if raw.startswith(bom):
            return _not_utf8(f"it is {name} text")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if raw and raw.count(0) * 4 >= len(raw):  # TOML text never holds a NUL byte
        return _not_utf8("it looks like UTF-16 text (every other byte is NUL)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return _not_utf8(f"byte 0x{raw[e.start]:02x} at line {line}, column {column} is not "
                         "valid UTF-8")


def _not_utf8(why: str) -> str:
    raise ValueError(f"not UTF-8 text: {why}; save the file as UTF-8")


def load_spec(path: Path | str = DEFAULT_SPEC) -> Spec:
    """Read and validate a recipe file. Raises InvalidSpec listing every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidSpec(path, ["file not found (create one with `aiprod-recipes init`)"]
                          ) from None
    except IsADirectoryError:
        raise InvalidSpec(path, ["is a folder, not a spec file"]) from None
    except OSError as e:
        raise InvalidSpec(path, [f"cannot be read: {e.strerror or e}"]) from None
    try:
        text = spec_text(raw)
    except ValueError as e:
        raise InvalidSpec(path, [str(e)]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidSpec(path, [f"not valid TOML: {e}"]) from None
    return _decode(doc, str(path))


def spec_to_builtins(spec: Spec) -> dict[str, Any]:
    """The resolved spec (defaults filled in) as plain Python values."""
    return msgspec.to_builtins(spec)


def spec_to_toml(spec: Spec) -> str:
    """The resolved spec as TOML text (what `aiprod-recipes show` prints)."""
    return tomlkit.dumps(spec_to_builtins(spec))


def section_values(spec: Spec, sections: tuple[str, ...]) -> dict[str, Any]:
    """The resolved values of some sections (or dotted keys such as ``eval.every_steps``):
    what a stage's provenance and item keys record. Values are as the resolved spec file
    holds them (JSON: a tuple is a list), so they compare equal to what DVC reads."""
    return pick(json.loads(resolved_text(spec)), sections)


def pick(resolved: dict[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """Some sections or dotted keys of a resolved spec's values, by their name; raises
    KeyError when one is absent."""
    out: dict[str, Any] = {}
    for name in sections:
        node: Any = resolved
        for part in name.split("."):
            node = node[part]
        out[name] = node
    return out


def resolved_text(spec: Spec) -> str:
    """The resolved spec as the JSON file DVC reads params from: every section and key in
    declaration order, defaults filled in, one stable text for equal specs."""
    return json.dumps(spec_to_builtins(spec), indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"


def json_schema() -> dict[str, Any]:
    """A JSON Schema of the spec, with every field's description, for editors."""
    return msgspec.json.schema(Spec)
