"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

Sealed JSON (evidence records, audit reports, checkpoint metadata) is hashed and signed over
these bytes, so that anyone can recompute them from the parsed JSON with any JCS library:
UTF-8; no whitespace; object members sorted by the UTF-16 code units of their names; strings
with only the mandatory escapes (\\" \\\\ \\b \\f \\n \\r \\t, other controls as \\u00xx);
numbers as ECMAScript's Number.prototype.toString (1e+21, 1e-7, 0.000001, -0 as 0).

The serialization itself is Trail of Bits' `rfc8785` package (pure Python, checked in our
tests against the RFC's examples and number table). This module pins down what we accept:
- None, bool, str, int, float, list / tuple, and dict with str keys; nothing else (no
  bytes, Decimal, datetime: convert them explicitly, the conversion is part of what is
  signed);
- int only within the IEEE 754 double's exact range, -(2**53 - 1)..2**53 - 1: beyond it a
  JSON reader may silently round, and a sealed value must read back exactly;
- no NaN or Infinity (not JSON), no lone surrogates in strings (not UTF-8).
Every refusal raises `CanonicalizationError` (a ValueError).
"""

from __future__ import annotations

from typing import TypeAlias

import rfc8785

JsonValue: TypeAlias = (
    bool
    | int
    | float
    | str
    | list["JsonValue"]
    | tuple["JsonValue", ...]
    | dict[str, "JsonValue"]
    | None
)

class CanonicalizationError(ValueError):
    """The value has no RFC 8785 form (or one we refuse, see the module docstring)."""


def canonicalize(value: JsonValue) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as error:
        raise CanonicalizationError(str(error)) from error
    except UnicodeError as error:
        # A lone surrogate in an object key fails while sorting by UTF-16.
        raise CanonicalizationError("input contains non-UTF-8 code points") from error
    except RecursionError as error:
        raise CanonicalizationError("value nested too deeply (or contains itself)") from error
