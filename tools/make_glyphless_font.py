"""Writes src/render/glyphless.ttf: a TrueType font whose glyphs are all empty and half an em
wide. The searchable PDF embeds it for its invisible text layer, so viewers never substitute
a system font, and every character has the same advance (the renderer scales words with Tz).

    python3 -m venv target/tools-venv && target/tools-venv/bin/pip install fonttools==4.68.0
    target/tools-venv/bin/python tools/make_glyphless_font.py
"""

from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

OUT = Path(__file__).resolve().parent.parent / "src" / "render" / "glyphless.ttf"
UNITS_PER_EM = 1000
ADVANCE = 500  # must match GLYPH_ADVANCE in src/render/pdf.rs

fb = FontBuilder(UNITS_PER_EM, isTTF=True)
order = [".notdef", "blank"]
fb.setupGlyphOrder(order)
fb.setupCharacterMap({})
empty = TTGlyphPen(None).glyph()
fb.setupGlyf({name: empty for name in order})
fb.setupHorizontalMetrics({name: (ADVANCE, 0) for name in order})
fb.setupHorizontalHeader(ascent=800, descent=-200)
fb.setupNameTable({"familyName": "OcrdGlyphless", "styleName": "Regular"})
fb.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
fb.setupPost()
fb.font["head"].created = fb.font["head"].modified = 0  # reproducible bytes
fb.save(str(OUT))
print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
