#!/usr/bin/env python3
"""Render pages of accented Latin text (German, French, Spanish, Portuguese, Polish, Czech)
with their ground truth, to measure what the PP-OCR models read of diacritics.

    python tools/make_accent_pages.py OUT_DIR

Writes OUT_DIR/page_NNN.png (A4 at 150 dpi, one language per page, fonts the system has:
Debian's fonts-dejavu and fonts-liberation) and page_NNN.gt.txt (one printed line per line).
Deterministic: the same fonts give the same files. The sentences were written for this
purpose; they are not from any corpus.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TEXTS = {
    "de": "Über die Brücke gingen früh am Morgen zwölf Bäcker, die ihre Brötchen zum Markt "
    "trugen. Der Fußweg war schmal, und mancher ärgerte sich über die Pfützen. Größere "
    "Körbe trug nur Jürgen, der stärkste von allen, während Käthe die Gebühren zählte. "
    "Später, als die Glocken läuteten, saßen alle müde am Flussufer und aßen süße Äpfel. "
    "Nächste Woche öffnet der Laden schon um sechs Uhr; die Öffnungszeiten hängen an der Tür.",
    "fr": "À l'aube, les élèves traversèrent la forêt près du château où vivait un vieux "
    "garçon très discret. Il préférait les légumes de son jardin aux pâtisseries de la ville, "
    "même quand Noël approchait. « Où êtes-vous allés ? » demanda-t-il, surpris de voir "
    "l'hôpital désert. Ça n'arrive qu'une fois : la fête du maïs réunit chaque année des "
    "curieux venus de très loin, qui goûtent l'œuvre des cuisiniers et s'émerveillent.",
    "es": "El señor Muñoz caminó hacia la estación con su niño pequeño, que llevaba una "
    "canción en la cabeza. ¿Quién sabría decir cuántos años tenía el árbol del jardín? "
    "Según la leyenda, allí durmió un camión entero de pingüinos durante el invierno. "
    "¡Qué extraño! La señora Ibáñez afirmó que aquella noche oyó música en el salón, "
    "aunque nadie tocó el piano ni encendió la lámpara de aceite.",
    "pt": "Não há razão para pressa, disse o capitão ao chegar à ilha. As crianças "
    "correram até à praia, onde os pescadores já descarregavam o peixe. A avó, com o "
    "coração apertado, esperava notícias do irmão que partira para o Brasil. Às vezes a "
    "saudade é tão forte que nem a canção mais alegre a consegue afastar; então ela lê as "
    "cartas antigas, uma por uma, à luz da vela.",
    "pl": "Zażółć gęślą jaźń, powtarzał nauczyciel, gdy uczniowie ćwiczyli pisanie. "
    "Łódź płynęła wolno po rzece, a żółw odpoczywał na kamieniu. Wieczorem babcia "
    "opowiadała o źródłach w górach i o tym, jak dziadek zgubił się we mgle. Następnego "
    "dnia ślady prowadziły aż do mostu, gdzie ktoś zostawił świeży chleb i dzbanek mleka.",
    "cs": "Příliš žluťoučký kůň úpěl ďábelské ódy, zpívali studenti na koleji. Večer "
    "přišla zpráva, že vlak do Brna bude mít zpoždění kvůli sněhu. Dědeček řekl, že "
    "takovou zimu nepamatuje, a uvařil čaj s medem. Ráno bylo všechno bílé a děti "
    "stavěly sněhuláka, který měl místo nosu mrkev a na hlavě starý hrnec.",
}

FONTS = [
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
]

DPI = 150
PAGE = (1240, 1754)
MARGIN = 150


def wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for i, (lang, text) in enumerate(TEXTS.items()):
        font = ImageFont.truetype(FONTS[i % len(FONTS)], size=round(12 * DPI / 72))
        page = Image.new("L", PAGE, 255)
        draw = ImageDraw.Draw(page)
        lines = wrap(draw, text, font, PAGE[0] - 2 * MARGIN)
        y = MARGIN
        for line in lines:
            draw.text((MARGIN, y), line, font=font, fill=20)
            y += round(font.size * 1.45)
        page.save(out / f"page_{i:03}.png")
        (out / f"page_{i:03}.gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"page_{i:03}: {lang}, {len(lines)} lines, {Path(FONTS[i % len(FONTS)]).stem}")


if __name__ == "__main__":
    main()
