#!/usr/bin/env python3
"""Score `ocrd ocr` on the sample sets: CER and CER_ci per page and per set, with the
orientation and skew each page was read with. For trying a change quickly; `make bench` gives
the figures against the baselines.

    python tools/eval_sets.py [--bin target/debug/ocrd] [SET...] [-- OCRD_OCR_ARGS...]

SET is a folder of ../shared/eval (default: public skew real-public). Arguments after `--` go
to `ocrd ocr` (e.g. `-- --lang all`). Needs the models (scripts/fetch-models.sh).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO.parent / "shared" / "eval"
sys.path.insert(0, str(REPO / "tools"))
from ppocr_reference import cer, gt_path  # noqa: E402


def cer_ci(hypothesis: str, reference: str) -> float:
    """CER case-folded with all whitespace removed, as for the receipts."""
    fold = lambda s: re.sub(r"\s+", "", s).lower()  # noqa: E731
    return cer(fold(hypothesis), fold(reference), normalize=False)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=str(REPO / "target" / "debug" / "ocrd"))
    parser.add_argument("sets", nargs="*", default=["public", "skew", "real-public"])
    args = parser.parse_args(argv)
    for name in args.sets:
        pages = sorted(p for p in (EVAL / name).iterdir() if p.suffix in (".png", ".jpg"))
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(
                [args.bin, "ocr", "-f", "json", "-o", out, *extra, *map(str, pages)],
                check=True, cwd=REPO,
            )
            totals = [0.0, 0.0]
            for page in pages:
                result = json.loads((Path(out) / f"{page.stem}.json").read_text())["pages"][0]
                text = "\n".join(
                    line["text"] for block in result["blocks"] for line in block["lines"]
                )
                truth = gt_path(page).read_text(encoding="utf-8")
                scores = cer(text, truth), cer_ci(text, truth)
                totals = [t + s for t, s in zip(totals, scores)]
                print(f"{name}/{page.stem}: CER {scores[0]:.4f} CER_ci {scores[1]:.4f} "
                      f"rotation {result['rotation']} skew {result.get('skew')}")
            n = len(pages)
            print(f"== {name}: mean CER {totals[0] / n:.4f}, CER_ci {totals[1] / n:.4f}")


if __name__ == "__main__":
    main()
