"""One Markdown file, several benchmark scripts: each script owns one marked section.

A section lies between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``; writing
it replaces only that section (or appends it), so the other scripts' results stay.
"""

from __future__ import annotations

import re
from pathlib import Path


def write_section(doc: Path, name: str, body: str, *, title: str | None = None) -> None:
    """Put ``body`` into section ``name`` of ``doc``; the file starts with ``title`` if new.

    Text outside any marked section (a result written before markers existed)
    is kept as it is.
    """
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = doc.read_text() if doc.exists() else (f"# {title}\n\n" if title else "")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block
    doc.write_text(text)
