"""RFC 8785 JCS: the RFC's examples and number table, the reference implementation's test
data (cyberphone/json-canonicalization testdata), and, where Node.js is installed, an
ECMAScript engine as the oracle for numbers and strings."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from decimal import Decimal

import pytest

from archive.sealing.canonical_json import CanonicalizationError, canonicalize

# RFC 8785 section 3.2.2 (input text) and 3.2.4 (its canonical output).
RFC_SAMPLE_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_SAMPLE_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)
RFC_SAMPLE_OUTPUT_HEX = (
    "7b226c69746572616c73223a5b6e756c6c2c747275652c66616c73655d2c226e756d62657273223a5b333333"
    "3333333333332e333333333333332c31652b33302c342e352c302e3030322c31652d32375d2c22737472696e"
    "67223a22e282ac245c75303030665c6e4127425c225c5c5c5c5c222f227d"
)

# RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript text.
NUMBER_TABLE = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]
NOT_NUMBERS = ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"]

# More ECMAScript Number.prototype.toString cases around the format switches.
MORE_NUMBERS = [
    (1e21, "1e+21"),
    (1e20, "100000000000000000000"),
    (1e-7, "1e-7"),
    (1e-6, "0.000001"),
    (1.5e-7, "1.5e-7"),
    (123e-20, "1.23e-18"),
    (-0.0, "0"),
    (4.5, "4.5"),
    (0.002, "0.002"),
    (1e30, "1e+30"),
    (100.0, "100"),
    (0.1 + 0.2, "0.30000000000000004"),
    (1e16, "10000000000000000"),
    (1.2345e19, "12345000000000000000"),
    (-1.5e300, "-1.5e+300"),
]

# cyberphone/json-canonicalization testdata: (input text, expected output text).
REFERENCE_TESTDATA = {
    "arrays": (
        '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]',
        '[56,{"1":[],"10":null,"d":true}]',
    ),
    "french": (
        '{\n  "peach": "This sorting order",\n  "p\u00e9ch\u00e9": "is wrong according to French",'
        '\n  "p\u00eache": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
        '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
        '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}',
    ),
    "structures": (
        '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n'
        '  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
        '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
    ),
    "unicode": (
        '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n',
        '{"Unnormalized Unicode":"\u1e0d\u0307"}',
    ),
    "values": (
        '{\n  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],'
        '\n  "escaping": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
        '  "literals": [null, true, false]\n}',
        '{"escaping":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/","literals":[null,true,false],'
        '"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}',
    ),
    "weird": (
        '{\n  "\\u20ac": "Euro Sign",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n'
        '  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n'
        '  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
}


def _double(bits_hex: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits_hex))[0]
    return value


def test_rfc_sample() -> None:
    output = canonicalize(json.loads(RFC_SAMPLE_INPUT))
    assert output == RFC_SAMPLE_OUTPUT.encode("utf-8")
    assert output.hex() == RFC_SAMPLE_OUTPUT_HEX


def test_rfc_sorting_by_utf16_code_units() -> None:
    """RFC 8785 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16, where
    code point order would put it after."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected_order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    canonical = canonicalize(value)
    assert list(json.loads(canonical)) == expected_order
    assert canonical.startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control"')


@pytest.mark.parametrize(("bits", "expected"), NUMBER_TABLE)
def test_rfc_number_table(bits: str, expected: str) -> None:
    assert canonicalize(_double(bits)) == expected.encode()


@pytest.mark.parametrize("bits", NOT_NUMBERS)
def test_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(_double(bits))
    with pytest.raises(CanonicalizationError):
        canonicalize({"nested": [_double(bits)]})


@pytest.mark.parametrize(("number", "expected"), MORE_NUMBERS)
def test_more_number_formats(number: float, expected: str) -> None:
    assert canonicalize(number) == expected.encode()


@pytest.mark.parametrize("name", sorted(REFERENCE_TESTDATA))
def test_reference_testdata(name: str) -> None:
    source, expected = REFERENCE_TESTDATA[name]
    assert canonicalize(json.loads(source)) == expected.encode("utf-8")


def test_integers_within_the_safe_range_only() -> None:
    assert canonicalize(2**53 - 1) == b"9007199254740991"
    assert canonicalize(-(2**53 - 1)) == b"-9007199254740991"
    assert canonicalize([0, -1, 42]) == b"[0,-1,42]"
    # A float may be 2**53 exactly; an int that large could not be read back exactly.
    assert canonicalize(float(2**53)) == b"9007199254740992"
    for too_big in (2**53, -(2**53), 10**30):
        with pytest.raises(CanonicalizationError):
            canonicalize(too_big)


def test_string_escapes() -> None:
    controls = "".join(chr(c) for c in range(0x20))
    assert canonicalize(controls) == (
        b'"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        b"\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
        b'\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"'
    )
    # Only the mandatory escapes: "/", DEL, non-ASCII and U+2028 stay as they are.
    assert canonicalize('/\x7f\u00e9\u2028"\\') == '"/\x7f\u00e9\u2028\\"\\\\"'.encode()
    assert canonicalize("\U0001f600") == b'"\xf0\x9f\x98\x80"'


def test_literals_and_containers() -> None:
    assert canonicalize(None) == b"null"
    assert canonicalize(True) == b"true"
    assert canonicalize({"b": [], "a": {}, "c": (1, "x")}) == b'{"a":{},"b":[],"c":[1,"x"]}'


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",
        {"\udc00": 1},
        b"bytes",
        Decimal("1.5"),
        {1: "int key"},
        {"a": {1, 2}},
    ],
    ids=["lone-surrogate", "lone-surrogate-key", "bytes", "decimal", "int-key", "set"],
)
def test_refused_values(value: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(value)  # type: ignore[arg-type]


def test_self_containing_value_is_refused() -> None:
    looping: list[object] = []
    looping.append(looping)
    with pytest.raises(CanonicalizationError):
        canonicalize(looping)  # type: ignore[arg-type]


_NODE = shutil.which("node")
_NODE_SCRIPT = r"""
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const view = new DataView(new ArrayBuffer(8));
const numbers = input.numbers.map((hex) => {
  view.setBigUint64(0, BigInt("0x" + hex));
  return JSON.stringify(view.getFloat64(0));
});
const strings = input.strings.map((s) => JSON.stringify(s));
process.stdout.write(JSON.stringify({numbers, strings}));
"""


@pytest.mark.integration  # runs node
@pytest.mark.skipif(_NODE is None, reason="needs Node.js as the ECMAScript oracle")
def test_against_ecmascript() -> None:
    """JSON.stringify of a number or a well-formed string is exactly JCS's form of it."""
    assert _NODE is not None
    rng = random.Random(8785)
    patterns: list[str] = []
    while len(patterns) < 20000:
        bits = rng.getrandbits(64)
        if len(patterns) % 2:
            # Uniform bit patterns are mostly huge or tiny; also draw everyday magnitudes.
            bits = struct.unpack(">Q", struct.pack(">d", rng.uniform(-1e7, 1e7)))[0]
        if (bits >> 52) & 0x7FF != 0x7FF:  # skip NaN and infinities
            patterns.append(f"{bits:016x}")
    alphabet = [chr(c) for c in range(0x00, 0x80)] + ["\u0080", "\u00e9", "\u2028", "\U0001f600"]
    strings = ["".join(rng.choices(alphabet, k=rng.randrange(12))) for _ in range(2000)]
    completed = subprocess.run(
        [_NODE, "-e", _NODE_SCRIPT],
        input=json.dumps({"numbers": patterns, "strings": strings}),
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
        timeout=60,
    )
    oracle = json.loads(completed.stdout)
    for bits_hex, expected in zip(patterns, oracle["numbers"], strict=True):
        assert canonicalize(_double(bits_hex)) == expected.encode(), bits_hex
    for text, expected in zip(strings, oracle["strings"], strict=True):
        assert canonicalize(text) == expected.encode("utf-8"), text
