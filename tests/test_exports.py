"""Reading CRM exports: JSON array, NDJSON and CSV, streamed, each record with the line it starts on."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.operations import exports
from crmsync.operations.exports import ExportError, ExportLine, detect_format, read_export


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def lines(path: Path, format: str | None = None) -> list[ExportLine]:
    return list(read_export(path, format))


def test_csv_records_keep_their_starting_line_even_across_quoted_newlines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "export.csv",
        'external_id,name,description\ncrm-1,Acme,"two\nlines"\n\ncrm-2,Globex,\n',
    )
    assert lines(path) == [
        ExportLine(2, {"external_id": "crm-1", "name": "Acme", "description": "two\nlines"}),
        ExportLine(5, {"external_id": "crm-2", "name": "Globex", "description": ""}),
    ]


def test_csv_row_with_the_wrong_number_of_columns_is_reported_and_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "export.csv", "external_id,name\ncrm-1,Acme,extra\ncrm-2,Globex\n")
    assert lines(path) == [
        ExportLine(2, error="3 columns where the header has 2"),
        ExportLine(3, {"external_id": "crm-2", "name": "Globex"}),
    ]


def test_csv_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffexternal_id,name\ncrm-1,Acme\n".encode())
    assert lines(path) == [ExportLine(2, {"external_id": "crm-1", "name": "Acme"})]


def test_csv_without_a_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no header row"):
        lines(write(tmp_path, "export.csv", ""))


def test_ndjson_malformed_line_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "export.ndjson",
        '{"external_id": "crm-1"}\n{"external_id": \n\n[1]\n{"external_id": "crm-2"}\n',
    )
    found = lines(path)
    assert [(item.line, item.record) for item in found] == [
        (1, {"external_id": "crm-1"}),
        (2, None),
        (4, None),
        (5, {"external_id": "crm-2"}),
    ]
    assert found[1].error.startswith("not valid JSON")
    assert found[2].error == "a record must be a JSON object, not list"


def test_json_array_elements_are_read_one_by_one_with_their_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "export.json",
        '[\n  {"external_id": "crm-1",\n   "name": "Acme"},\n  {"external_id": "crm-2"}, 7\n]\n',
    )
    assert lines(path) == [
        ExportLine(2, {"external_id": "crm-1", "name": "Acme"}),
        ExportLine(4, {"external_id": "crm-2"}),
        ExportLine(4, error="a record must be a JSON object, not int"),
    ]


def test_json_array_read_across_buffer_refills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "_CHUNK_CHARS", 7)
    records = [{"external_id": f"crm-{n}", "name": "N" * n} for n in range(30)]
    path = write(
        tmp_path,
        "export.json",
        "[" + ",\n".join(f'{{"external_id": "crm-{n}", "name": "{"N" * n}"}}' for n in range(30)) + "]",
    )
    found = lines(path)
    assert [item.record for item in found] == records
    assert [item.line for item in found] == list(range(1, 31))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"external_id": "crm-1"}', "a JSON export must be an array of records"),
        ('[{"external_id": "crm-1"}, {"external_id": ', "not valid JSON"),
        ('[{"external_id": "crm-1"}', "the JSON array is not closed"),
        ('[{"external_id": "crm-1"} {"external_id": "crm-2"}]', "records must be separated by commas"),
    ],
)
def test_json_array_syntax_error_ends_the_read_with_a_fatal_line(
    tmp_path: Path, text: str, error: str
) -> None:
    last = lines(write(tmp_path, "export.json", text), "json")[-1]
    assert last.fatal and error in last.error


@pytest.mark.parametrize(
    ("name", "text", "format"),
    [
        ("export.CSV", "{", "csv"),
        ("export.jsonl", "[", "ndjson"),
        ("export.txt", "  \n[{}]", "json"),
        ("export", '{"a": 1}', "ndjson"),
        ("export.dat", "external_id\n", "csv"),
    ],
)
def test_format_comes_from_the_extension_else_the_first_character(
    tmp_path: Path, name: str, text: str, format: str
) -> None:
    assert detect_format(write(tmp_path, name, text)) == format


def test_progress_reports_the_bytes_read(tmp_path: Path) -> None:
    path = write(tmp_path, "export.csv", "external_id\n" + "".join(f"crm-{n}\n" for n in range(1000)))
    read: list[int] = []
    assert len(list(read_export(path, progress=read.append))) == 1000
    assert sum(read) == path.stat().st_size
