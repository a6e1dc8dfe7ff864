"""Forms in office files: an attached Word or Excel 沟通单 → the text and tables that the same
form pasted into the mail would give, for parsers/fields.py to read. Pure: bytes in, an
OfficeForm out; never raises.

What each format is read with, and why:
- .docx (WordprocessingML): the standard library's zipfile and ElementTree, walking w:body in
  document order — paragraphs (with the text of content controls, hyperlinks and tracked
  insertions), tables (rows, cells) and block content controls. mammoth was measured at
  ~250 ms for a one-page form (its own XML layer; ElementTree parses the same part in 0.3 ms),
  and python-docx leaves out the text inside content controls, which Chinese form templates
  use for their fill-in boxes.
- .xlsx / .xls / .ods (and WPS's .et, which is BIFF like .xls): python-calamine, one
  maintained reader (Rust) for all of them, dates as dates, ~0.2 ms for a form sheet.
- .doc / .wps / .odt / .rtf: not read here; the problem CONVERT has gateway/office.py let
  LibreOffice turn them into .docx. A compound (OLE) file is told apart by its streams
  (olefile): an encrypted .docx/.xlsx, a macro project, a workbook or a Word document.

Guards come first, before any reader sees the bytes: a zip whose entries would unpack to
more than `limits.unpacked_bytes` or hold more than `limits.entries` files is refused
(zipfile never inflates past an entry's declared size, so the declared sizes bound the
work), an encrypted file is named as such, and a macro-enabled file is refused whatever its
name says.
"""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import PurePosixPath

log = logging.getLogger(__name__)

# The file names that may hold a form; the content decides how it is read (people rename).
WORD_SUFFIXES = {".docx", ".docm", ".dotx", ".doc", ".wps", ".odt", ".rtf"}
SHEET_SUFFIXES = {".xlsx", ".xlsm", ".xltx", ".xls", ".et", ".ods"}
FORM_SUFFIXES = WORD_SUFFIXES | SHEET_SUFFIXES

ENCRYPTED, MACRO, TOO_LARGE, UNREADABLE, CONVERT = "encrypted", "macro", "too_large", "unreadable", "convert"

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# Containers whose children are read as if they stood in their place.
_TRANSPARENT = {f"{_W}sdt", f"{_W}sdtContent", f"{_W}customXml", f"{_W}smartTag", f"{_W}ins"}


@dataclass(frozen=True)
class Limits:
    unpacked_bytes: int = 20 << 20  # a filled-in form is a few hundred KB unpacked
    entries: int = 2000


@dataclass(frozen=True)
class OfficeForm:
    """What an office file holds, read as a pasted form; `problem` says why nothing was read
    (one of ENCRYPTED, MACRO, TOO_LARGE, UNREADABLE), or CONVERT: a format read after
    LibreOffice has turned it into .docx."""

    text: str = ""  # paragraphs (and one-cell sheet rows), one per line
    tables: list[list[list[str]]] = field(default_factory=list)  # continuation rows folded in
    problem: str = ""


def is_form_file(filename: str) -> bool:
    return PurePosixPath(filename.lower()).suffix in FORM_SUFFIXES


def read_office(filename: str, data: bytes, limits: Limits = Limits()) -> OfficeForm:
    """The form text and tables of one attached office file (see the module docstring)."""
    try:
        return _read(filename, data, limits)
    except Exception:  # a reader's bug or an input no guard foresaw: this file, not the mail
        log.warning("could not read the office file %r", filename, exc_info=True)
        return OfficeForm(problem=UNREADABLE)


def _read(filename: str, data: bytes, limits: Limits) -> OfficeForm:
    suffix = PurePosixPath(filename.lower()).suffix
    if data.startswith(_ZIP):
        return _read_zip(data, limits)
    if data.startswith(_OLE):
        return _read_ole(data)
    if data.lstrip()[:5] == b"{\\rtf" or suffix in {".doc", ".wps", ".rtf"}:
        return OfficeForm(problem=CONVERT)
    return OfficeForm(problem=UNREADABLE)


def _read_ole(data: bytes) -> OfficeForm:
    """A compound (OLE) file: an encrypted .docx/.xlsx, an .xls, a .doc or .wps — by its streams."""
    import olefile

    try:
        with olefile.OleFileIO(data) as ole:
            names = {"/".join(path) for path in ole.listdir(streams=True, storages=True)}
    except OSError:  # olefile's complaint about a damaged container
        return OfficeForm(problem=UNREADABLE)
    if "EncryptedPackage" in names:  # MS-OFFCRYPTO: the real .docx/.xlsx is encrypted inside
        return OfficeForm(problem=ENCRYPTED)
    if any(n.startswith(("_VBA_PROJECT_CUR", "Macros")) for n in names):
        return OfficeForm(problem=MACRO)
    if "Workbook" in names or "Book" in names:  # BIFF8, BIFF5
        return _read_sheet(data)
    if "WordDocument" in names:
        return OfficeForm(problem=CONVERT)  # .doc, and .wps as WPS saves it
    return OfficeForm(problem=UNREADABLE)


def _read_zip(data: bytes, limits: Limits) -> OfficeForm:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return OfficeForm(problem=UNREADABLE)
    if len(entries) > limits.entries or sum(e.file_size for e in entries) > limits.unpacked_bytes:
        return OfficeForm(problem=TOO_LARGE)
    names = {e.filename for e in entries}
    if any(n.lower().endswith("vbaproject.bin") for n in names) or (
            "[Content_Types].xml" in names and b"macroEnabled" in archive.read("[Content_Types].xml")):
        return OfficeForm(problem=MACRO)
    if "word/document.xml" in names:
        return _read_docx(archive.read("word/document.xml"))
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        return _read_sheet(data)
    if "mimetype" in names:
        mimetype = archive.read("mimetype")
        if b"opendocument.spreadsheet" in mimetype:
            return _read_sheet(data)
        if b"opendocument.text" in mimetype:
            return OfficeForm(problem=CONVERT)
    return OfficeForm(problem=UNREADABLE)  # a zip, but no document we know (a .pptx, an archive)


# ---------------------------------------------------------------------------------------
# Word

def _read_docx(document_xml: bytes) -> OfficeForm:
    try:
        root = ET.fromstring(document_xml)
    except ET.ParseError:
        return OfficeForm(problem=UNREADABLE)
    body = root.find(f"{_W}body")
    if body is None:
        return OfficeForm(problem=UNREADABLE)
    lines: list[str] = []
    tables: list[list[list[str]]] = []
    for block in _blocks(body):
        if block.tag == f"{_W}p":
            lines.append(_paragraph_text(block))
        else:
            tables.append(_folded([[_cell_text(cell) for cell in _children(row, f"{_W}tc")]
                                   for row in _children(block, f"{_W}tr")]))
    return OfficeForm(text="\n".join(lines), tables=[t for t in tables if t])


def _blocks(parent: ET.Element) -> Iterator[ET.Element]:
    """The paragraphs and tables of `parent`, in document order, through content controls."""
    for child in parent:
        if child.tag in (f"{_W}p", f"{_W}tbl"):
            yield child
        elif child.tag in _TRANSPARENT:
            yield from _blocks(child)


def _children(parent: ET.Element, tag: str) -> Iterator[ET.Element]:
    """`parent`'s children with `tag`, also where a content control wraps them (rows, cells)."""
    for child in parent:
        if child.tag == tag:
            yield child
        elif child.tag in _TRANSPARENT:
            yield from _children(child, tag)


def _paragraph_text(paragraph: ET.Element) -> str:
    parts = []
    for el in paragraph.iter():
        if el.tag == f"{_W}t" and el.text:
            parts.append(el.text)
        elif el.tag == f"{_W}tab":
            parts.append("\t")
        elif el.tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
    return "".join(parts)


def _cell_text(cell: ET.Element) -> str:
    """A cell's paragraphs, one per line (a table nested in the cell is left out)."""
    return "\n".join(_paragraph_text(p) for p in _blocks(cell) if p.tag == f"{_W}p").strip()


# ---------------------------------------------------------------------------------------
# Sheets

def _read_sheet(data: bytes) -> OfficeForm:
    import python_calamine  # only mails with a sheet attached pay for the import

    try:
        workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except python_calamine.PasswordError:
        return OfficeForm(problem=ENCRYPTED)
    except python_calamine.CalamineError:
        return OfficeForm(problem=UNREADABLE)
    lines: list[str] = []
    tables: list[list[list[str]]] = []
    for meta in workbook.sheets_metadata:
        shown = meta.visible == python_calamine.SheetVisibleEnum.Visible
        if meta.typ != python_calamine.SheetTypeEnum.WorkSheet or not shown:
            continue
        rows = [[_cell_value(v) for v in row] for row in workbook.get_sheet_by_name(meta.name).to_python()]
        rows = [_trimmed(row) for row in rows]
        # A form typed down one column (`标签：值` in A) reads like the lines of a mail.
        lines += [row[0] for row in rows if len(row) == 1]
        tables.append(_folded([row for row in rows if len(row) > 1]))
    return OfficeForm(text="\n".join(lines), tables=[t for t in tables if t])


def _cell_value(value: object) -> str:
    """A cell as the person sees it: dates as dates, 3.0 as 3."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d" if value.time() == time() else "%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value).strip()


def _trimmed(row: list[str]) -> list[str]:
    while row and not row[-1]:
        row = row[:-1]
    return row


# ---------------------------------------------------------------------------------------

def _folded(rows: list[list[str]]) -> list[list[str]]:
    """Rows with every label cell empty continue the row above: a merged label (参与部门及职责
    over two rows), or a value typed over several rows. Empty rows are dropped."""
    out: list[list[str]] = []
    for row in rows:
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        continues = out and all(not cells[i] for i in range(0, len(cells), 2))
        if not continues:
            out.append(cells)
            continue
        above = out[-1]
        for i in range(1, len(cells), 2):
            if cells[i] and i < len(above):
                above[i] = f"{above[i]}\n{cells[i]}" if above[i] else cells[i]
    return out
