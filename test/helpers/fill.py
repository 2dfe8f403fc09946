"""Messages with every field set to a value derived from a seed, from the type's own
description, so round-trip tests cover fields added to the interfaces later."""
from __future__ import annotations

import importlib
import re
from typing import Any

_INTS = {"octet", "char", "byte", "uint8", "int8", "uint16", "int16", "uint32", "int32",
         "uint64", "int64"}
_FLOATS = {"float", "double", "float32", "float64"}
_SEQUENCE = re.compile(r"sequence<(.+?)(?:, ?\d+)?>\Z")
_ARRAY = re.compile(r"(.+)\[(\d+)\]\Z")


def message_class(type_name: str) -> type:
    """``pkg/Name`` -> the generated Python class ``pkg.msg.Name``."""
    package, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _value(type_name: str, seed: int) -> Any:
    type_name = re.sub(r"<=\d+\Z", "", type_name)            # bounded strings
    if m := _SEQUENCE.match(type_name):
        return [_value(m.group(1), seed + i) for i in range(2)]
    if m := _ARRAY.match(type_name):
        return [_value(m.group(1), seed + i) for i in range(int(m.group(2)))]
    if type_name == "boolean":
        return seed % 2 == 1
    if type_name in {"octet", "byte"}:
        return bytes([seed % 256])
    if type_name in _INTS:
        return seed % 128
    if type_name in _FLOATS:
        return seed % 1000 + 0.5                              # exact in float32
    if type_name in {"string", "wstring"}:
        return f"s{seed}"
    return fill(message_class(type_name), seed)


def fill(cls: type, seed: int = 1) -> Any:
    """An instance of ``cls`` with every field set; different seeds give different messages."""
    msg = cls()
    for i, (name, type_name) in enumerate(cls.get_fields_and_field_types().items()):
        setattr(msg, name, _value(type_name, seed * 31 + i))
    return msg
