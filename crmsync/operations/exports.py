"""Reading a CRM export — a JSON array, NDJSON, or CSV with a header row — one record at a time.

Each reader yields `ExportLine`s: the record (flat key → value) with the line it starts on, or the
reason it could not be read. A malformed line is reported and the reading goes on; only a JSON array
cannot be resumed after a syntax error, so its reader reports the rest of the file as unreadable.
Nothing holds more than one record (and a read buffer) in memory, whatever the export's size.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["ExportLine", "ExportError", "FORMATS", "detect_format", "read_export"]

FORMATS = ("csv", "json", "ndjson")
# A JSON array is parsed one element at a time from a buffer; a single record larger than this is
# treated as malformed rather than read whole into memory.
MAX_RECORD_CHARS = 1_000_000
_CHUNK_CHARS = 65_536
# Python's parser recurses once per nesting level; a record nested deeper than its stack allows is not
# an export's record (the reasons name no value).
TOO_DEEP = "not valid JSON (nested too deeply)"
TOO_LONG_NUMBER = f"not valid JSON (an integer has more than {sys.get_int_max_str_digits():,} digits)"
_EXTENSIONS = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}


class ExportError(ValueError):
    """The file cannot be read as an export at all (unknown format, no CSV header, not UTF-8)."""


@dataclass(frozen=True)
class ExportLine:
    """One record of the export, or why the lines at `line` could not be read as one.

    `fatal` marks an error after which nothing more of the file could be read.
    """

    line: int
    record: dict[str, Any] | None = None
    error: str = ""
    fatal: bool = False


def detect_format(path: Path) -> str:
    """The export's format from its extension, else from its first non-blank character."""
    known = _EXTENSIONS.get(path.suffix.lower())
    if known:
        return known
    with path.open(encoding="utf-8-sig") as stream:
        head = stream.read(4096).lstrip()
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "ndjson"
    return "csv"


def read_export(
    path: Path, format: str | None = None, progress: Callable[[int], object] | None = None
) -> Iterator[ExportLine]:
    """Every record of the export at `path`, in file order, each with the line it starts on.

    `progress`, when given, is called with the number of bytes of each read from the file (for a
    progress bar over the file's size).
    """
    format = format or detect_format(path)
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    readers = {"csv": _csv_records, "json": _json_array_records, "ndjson": _ndjson_records}
    with path.open("rb") as raw:
        counted = io.BufferedReader(_CountingReader(raw, progress or (lambda n: None)))
        # utf-8-sig: spreadsheet programs (and HubSpot's export) start their CSV with a byte-order mark.
        stream = io.TextIOWrapper(counted, encoding="utf-8-sig", newline="" if format == "csv" else None)
        try:
            yield from readers[format](stream)
        except UnicodeDecodeError as exc:
            raise ExportError(f"{path.name} is not UTF-8 text") from exc


def csv_header(path: Path, format: str | None = None) -> list[str] | None:
    """The column names of a CSV export's header row, stripped; None for another format, or for a
    CSV without a header (which read_export refuses)."""
    if (format or detect_format(path)) != "csv":
        return None
    with path.open(encoding="utf-8-sig", newline="") as stream:
        try:
            header = next(csv.reader(stream), None)
        except (csv.Error, UnicodeDecodeError):
            return None  # read_export says what is wrong with the file
    return [name.strip() for name in header] if header else None


class _CountingReader(io.RawIOBase):
    """A binary file that reports how many bytes each read took from it."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], object]) -> None:
        self._raw = raw
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if count:
            self._on_read(count)
        return int(count or 0)


def _ndjson_records(stream: IO[str]) -> Iterator[ExportLine]:
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield ExportLine(number, error=f"not valid JSON ({exc.msg})")
            continue
        except RecursionError:
            yield ExportLine(number, error=TOO_DEEP)
            continue
        except ValueError:  # int() past its digit limit (sys.get_int_max_str_digits)
            yield ExportLine(number, error=TOO_LONG_NUMBER)
            continue
        yield _as_record(number, value)


def _csv_records(stream: IO[str]) -> Iterator[ExportLine]:
    reader = csv.reader(stream)
    header = next(reader, None)
    if not header or not any(name.strip() for name in header):
        raise ExportError("the CSV file has no header row")
    names = [name.strip() for name in header]
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ExportLine(start, error=f"not valid CSV ({exc})")
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # A blank line is not a record.
        if len(row) != len(names):
            yield ExportLine(start, error=f"{len(row)} columns where the header has {len(names)}")
            continue
        yield ExportLine(start, record=dict(zip(names, row, strict=True)))


def _json_array_records(stream: IO[str]) -> Iterator[ExportLine]:
    """Decode the array's elements one by one with `raw_decode`, refilling a bounded buffer."""
    decoder = json.JSONDecoder()
    buffer, line, at_eof = "", 1, False

    def fill() -> bool:
        nonlocal buffer, at_eof
        chunk = stream.read(_CHUNK_CHARS)
        at_eof = not chunk
        buffer += chunk
        return bool(chunk)

    def skip(chars: str) -> str:
        """Drop leading whitespace and `chars`, counting lines; return the next significant character."""
        nonlocal buffer, line
        while True:
            stripped = buffer.lstrip(" \t\r\n" + chars)
            line += buffer.count("\n", 0, len(buffer) - len(stripped))
            buffer = stripped
            if buffer or not fill():
                return buffer[:1]

    if skip("") != "[":
        yield ExportLine(line, error="a JSON export must be an array of records", fatal=True)
        return
    buffer = buffer[1:]
    expect_element = True
    while True:
        next_char = skip("")
        if next_char == "]":
            return
        if next_char == ",":
            buffer = buffer[1:]
            if expect_element:
                yield ExportLine(line, error="not valid JSON (a comma without a record)", fatal=True)
                return
            expect_element = True
            continue
        if not next_char:
            yield ExportLine(
                line, error="the JSON array is not closed (the file may be truncated)", fatal=True
            )
            return
        if not expect_element:
            yield ExportLine(line, error="not valid JSON (records must be separated by commas)", fatal=True)
            return
        while True:
            try:
                value, end = decoder.raw_decode(buffer)
                # A number at the buffer's end may go on in the next chunk.
                if end < len(buffer) or at_eof:
                    break
                fill()
            except RecursionError:
                yield ExportLine(line, error=f"{TOO_DEEP}; the rest is unread", fatal=True)
                return
            except json.JSONDecodeError as exc:
                # Incomplete at the end of the buffer, or truly malformed: read on, within a bound.
                if len(buffer) > MAX_RECORD_CHARS or not fill():
                    yield ExportLine(
                        line, error=f"not valid JSON ({exc.msg}); the rest is unread", fatal=True
                    )
                    return
            except ValueError:  # int() past its digit limit
                yield ExportLine(line, error=f"{TOO_LONG_NUMBER}; the rest is unread", fatal=True)
                return
        yield _as_record(line, value)
        line += buffer.count("\n", 0, end)
        buffer = buffer[end:]
        expect_element = False


def _as_record(line: int, value: Any) -> ExportLine:
    if not isinstance(value, dict):
        return ExportLine(line, error=f"a record must be a JSON object, not {type(value).__name__}")
    return ExportLine(line, record=value)
