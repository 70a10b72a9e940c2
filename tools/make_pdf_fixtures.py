"""Writes the PDF fixtures of the test suite that Rust cannot easily make itself.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install pikepdf==9.11.0
    /tmp/v/bin/python tools/make_pdf_fixtures.py

tests/fixtures/pdf/encrypted.pdf: one blank page, AES-256 encrypted with a user password
("secret"), so it cannot be opened without one.
"""

from pathlib import Path

import pikepdf

out = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pdf"
out.mkdir(parents=True, exist_ok=True)
pdf = pikepdf.new()
pdf.add_blank_page(page_size=(200, 100))
pdf.save(
    out / "encrypted.pdf",
    encryption=pikepdf.Encryption(user="secret", owner="owner-secret", R=6),
)
print(f"wrote {out / 'encrypted.pdf'}")
