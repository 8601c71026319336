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
    with pytest.raises(ExportError, match=r"^the CSV file has no header row$"):
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
        (
            '[{"external_id": "crm-1"}, {"external_id": ',
            "not valid JSON (Expecting value); the rest is unread",
        ),
        ('[{"external_id": "crm-1"}', "the JSON array is not closed (the file may be truncated)"),
        (
            '[{"external_id": "crm-1"} {"external_id": "crm-2"}]',
            "not valid JSON (records must be separated by commas)",
        ),
        (
            '[{"external_id": "crm-1"},, {"external_id": "crm-2"}]',
            "not valid JSON (a comma without a record)",
        ),
    ],
)
def test_json_array_syntax_error_ends_the_read_with_a_fatal_line(
    tmp_path: Path, text: str, error: str
) -> None:
    last = lines(write(tmp_path, "export.json", text), "json")[-1]
    assert (last.error, last.fatal) == (error, True)


def test_json_array_number_cut_by_a_buffer_refill_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "_CHUNK_CHARS", 4)
    found = lines(write(tmp_path, "export.json", "[12345678, {}]"))
    assert found == [ExportLine(1, error="a record must be a JSON object, not int"), ExportLine(1, {})]


def test_csv_row_the_csv_module_cannot_read_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    huge = "x" * 200_000  # over the csv module's field size limit
    path = write(tmp_path, "export.csv", f"external_id,name\ncrm-1,{huge}\n   \ncrm-2,Globex\n")
    found = lines(path)
    assert [(item.line, item.record) for item in found] == [
        (2, None),
        (4, {"external_id": "crm-2", "name": "Globex"}),
    ]
    assert found[0].error.startswith("not valid CSV (field larger than field limit")
    assert found[0].error.endswith(")")


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


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"^unknown export format 'xml': use one of csv, json, ndjson$"):
        lines(write(tmp_path, "export.xml", "<a/>"), "xml")


def test_a_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "export.ndjson"
    path.write_bytes(b'{"external_id": "\xff"}\n')
    with pytest.raises(ExportError, match=r"^export.ndjson is not UTF-8 text$"):
        lines(path)


def test_csv_keeps_a_quoted_crlf_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b'external_id,description\r\ncrm-1,"first\r\nsecond"\r\n')
    assert lines(path) == [ExportLine(2, {"external_id": "crm-1", "description": "first\r\nsecond"})]


def test_a_read_record_carries_no_error_and_a_bad_line_is_not_fatal(tmp_path: Path) -> None:
    good, bad = lines(write(tmp_path, "export.ndjson", '{"external_id": "crm-1"}\n{oops\n'))
    assert (good.error, good.fatal) == ("", False)
    assert (bad.error, bad.fatal) == (
        "not valid JSON (Expecting property name enclosed in double quotes)",
        False,
    )


@pytest.mark.parametrize(
    ("name", "text", "format"), [("export.json", "{}", "json"), ("export.ndjson", "[]", "ndjson")]
)
def test_the_extension_wins_over_the_first_character(
    tmp_path: Path, name: str, text: str, format: str
) -> None:
    assert detect_format(write(tmp_path, name, text)) == format
