"""Forms sent as attached Word/Excel files: every office file of one mail read within
[office] read_seconds, through parsers/office.py, with LibreOffice (headless, a profile of its
own, killed at the deadline) for the formats that parser leaves to it (.doc, .wps, .odt, .rtf).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from config.settings import OfficeSettings
from parsers.mime import Attachment
from parsers.office import CONVERT, UNREADABLE, Limits, OfficeForm, is_form_file, read_office

log = logging.getLogger(__name__)

# Problems found here rather than in the file: no LibreOffice for a .doc, the time was up.
NO_CONVERTER, TOO_SLOW = "no_converter", "too_slow"


@dataclass(frozen=True)
class AttachedForm:
    filename: str
    text: str = ""
    tables: list[list[list[str]]] = field(default_factory=list)
    problem: str = ""  # parsers/office.py's problems, NO_CONVERTER or TOO_SLOW


def attached_forms(settings: OfficeSettings, attachments: Iterable[Attachment]) -> list[AttachedForm]:
    """What each attached office file holds, in the mail's order."""
    deadline = time.monotonic() + settings.read_seconds
    limits = Limits(unpacked_bytes=settings.unpacked_mb << 20)
    out = []
    for attachment in attachments:
        if not is_form_file(attachment.filename):
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            out.append(AttachedForm(attachment.filename, problem=TOO_SLOW))
            continue
        data = attachment.payload
        form = read_office(attachment.filename, data, limits)
        if form.problem == CONVERT:
            form = _converted(settings, attachment.filename, data, left, limits)
        out.append(AttachedForm(attachment.filename, form.text, form.tables, form.problem))
    return out


def _converted(settings: OfficeSettings, filename: str, data: bytes, seconds: float, limits: Limits) -> OfficeForm:
    """The file turned into .docx by LibreOffice, then read."""
    soffice = shutil.which(settings.libreoffice) if settings.libreoffice else None
    if soffice is None:
        return OfficeForm(problem=NO_CONVERTER)
    suffix = PurePosixPath(filename.lower()).suffix
    with tempfile.TemporaryDirectory(prefix="liuhen-office-") as tmp:
        source = Path(tmp) / f"form{suffix if suffix.isascii() and suffix[1:].isalnum() else '.doc'}"
        source.write_bytes(data)
        command = [soffice, f"-env:UserInstallation=file://{tmp}/profile", "--headless", "--norestore",
                   "--nologo", "--convert-to", "docx", "--outdir", f"{tmp}/out", str(source)]
        # Its own session, so that at the deadline the whole of LibreOffice (soffice.bin and
        # its helpers) is killed, not only the launcher.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, errors = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return OfficeForm(problem=TOO_SLOW)
        converted = Path(tmp) / "out" / "form.docx"
        if not converted.exists():
            log.warning("LibreOffice did not convert %r (exit %s): %s", filename, process.returncode,
                        errors.decode(errors="replace")[-500:])
            return OfficeForm(problem=UNREADABLE)
        form = read_office("form.docx", converted.read_bytes(), limits)
        return OfficeForm(problem=UNREADABLE) if form.problem == CONVERT else form
