"""Writes the PDF fixtures of the test suite that Rust cannot easily make itself.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install pikepdf==9.11.0
    /tmp/v/bin/python tools/make_pdf_fixtures.py

tests/fixtures/pdf/encrypted.pdf: one blank page, AES-256 encrypted with a user password
("secret"), so it cannot be opened without one.
tests/fixtures/pdf/encrypted_text.pdf: one typed page (Helvetica), encrypted the same way.
"""

from pathlib import Path

import pikepdf

out = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pdf"
out.mkdir(parents=True, exist_ok=True)
encryption = pikepdf.Encryption(user="secret", owner="owner-secret", R=6)

pdf = pikepdf.new()
pdf.add_blank_page(page_size=(200, 100))
pdf.save(out / "encrypted.pdf", encryption=encryption)
print(f"wrote {out / 'encrypted.pdf'}")

LINES = ["Confidential minutes of 12 March 2024", "Budget approved: 48,500 EUR"]
pdf = pikepdf.new()
page = pdf.add_blank_page(page_size=(595, 842))
font = pdf.make_indirect(
    pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.Type1,
        BaseFont=pikepdf.Name.Helvetica,
        Encoding=pikepdf.Name.WinAnsiEncoding,
    )
)
page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
text = "BT /F1 14 Tf 72 770 Td 18 TL " + " ".join(f"({line}) Tj T*" for line in LINES) + " ET"
page.Contents = pdf.make_stream(text.encode("latin-1"))
pdf.save(out / "encrypted_text.pdf", encryption=encryption)
print(f"wrote {out / 'encrypted_text.pdf'}")
