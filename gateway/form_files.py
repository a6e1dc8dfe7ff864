"""A blank form as the files Chinese offices fill in: a Word table (python-docx) and an Excel
sheet (openpyxl), each | 栏目 | 填写内容 | 示例 |, the way parsers/office.py reads them back
(a label and its value side by side; the example column is not read). The words come from
mail_templates/phrases.toml, the labels and examples from the form."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from datetime import date

from config.forms import FormDef

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def blank_form_files(form: FormDef, lang: str, say: Callable[..., str], today: date) -> tuple[dict, ...]:
    """The outbox attachments (filename, content_type, base64) of the blank form as .docx and
    .xlsx; `say` gives the [command] phrases in `lang`."""
    title = form.name_for(lang)
    header = (say("file_label"), say("file_value"), say("file_example"))
    rows = [(f.label_for(lang) + ("*" if f.required else ""), f.example_for(lang, today) if f.example else "")
            for f in form.fields]
    intro = say("file_intro")
    return tuple({"filename": f"{title}{suffix}", "content_type": content_type,
                  "base64": base64.b64encode(make(title, intro, header, rows)).decode("ascii")}
                 for suffix, content_type, make in ((".docx", DOCX, _docx), (".xlsx", XLSX, _xlsx)))


def _docx(title: str, intro: str, header: tuple[str, str, str], rows: list[tuple[str, str]]) -> bytes:
    import docx  # python-docx: only a blank-form answer pays for the import
    from docx.shared import Cm, Pt

    document = docx.Document()
    document.add_heading(title, level=1)
    document.add_paragraph(intro)
    table = document.add_table(rows=1, cols=3)
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        cell.text = text
        cell.paragraphs[0].runs[0].bold = True
    for label, example in rows:
        cells = table.add_row().cells
        cells[0].text = label
        if example:
            cells[2].text = example
            cells[2].paragraphs[0].runs[0].font.size = Pt(9)
    for row in table.rows:
        for cell, width in zip(row.cells, (Cm(3.5), Cm(8), Cm(5)), strict=True):
            cell.width = width
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _xlsx(title: str, intro: str, header: tuple[str, str, str], rows: list[tuple[str, str]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new workbook has one sheet
    sheet.title = title[:31]  # Excel's limit on a sheet name
    sheet.append([title])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([intro])
    sheet.append(list(header))
    for cell in sheet[3]:
        cell.font = Font(bold=True)
    for label, example in rows:
        sheet.append([label, None, example])
    sheet.merge_cells("A1:C1")
    sheet.merge_cells("A2:C2")
    for column, width in (("A", 18), ("B", 48), ("C", 36)):
        sheet.column_dimensions[column].width = width
    for row in sheet.iter_rows(min_row=4):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
