"""Decode user CSV files strictly: UTF-8 or a BOM-marked UTF-16/32, else one clear error."""

from __future__ import annotations

import codecs

from beauty_pipeline.errors import PipelineError

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def decode_csv_text(data: bytes, label: str, error: type[PipelineError] = PipelineError) -> str:
    """Text of a CSV file; Latin-1, BOM-less UTF-16 and NUL bytes are refused, never guessed."""
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as problem:
        hint = ("it looks like UTF-16 without a byte-order mark" if data[1:2] == b"\0"
                or data[:1] == b"\0" else "perhaps Latin-1 / Windows-1252")
        raise error(f"{label} is not valid {encoding.upper()} (byte 0x{data[problem.start]:02x} "
                    f"at offset {problem.start}; {hint}); re-save it as UTF-8") from problem
    if "\0" in text:
        raise error(f"{label} contains a NUL byte at character {text.index(chr(0))}; re-save it "
                    "as plain UTF-8 text")
    return text
