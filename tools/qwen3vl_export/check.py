"""Runs an exported model directory with onnxruntime the way ocrd does (vision, embeddings,
prefill with DeepStack, greedy decoding with the KV cache) and compares the tokens with the
references transformers wrote (`export.py --tiny-random`).

    target/qwen-venv/bin/python tools/qwen3vl_export/check.py tests/fixtures/qwen3vl-tiny

With `--bench ROUNDS` it times the same loop instead (the baseline of `cargo bench --bench
qwen3vl`) and prints one JSON line: mean prefill milliseconds and decode tokens per second.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def run(model_dir: Path, rounds: int = 0):
    cfg = json.loads((model_dir / "ocrd-model.json").read_text())
    refs = json.loads((model_dir / "reference" / "reference.json").read_text())
    opts = ort.SessionOptions()
    vision, embed, decoder = (
        ort.InferenceSession(str(model_dir / f"{n}.onnx"), opts, providers=["CPUExecutionProvider"])
        for n in ("vision", "embed_tokens", "decoder")
    )
    t = cfg["text"]
    ok = True
    timings = []
    for name, r in refs.items():
        pixels = np.fromfile(model_dir / "reference" / f"{name}.pixel_values.f32", dtype="<f4").reshape(
            r["pixel_values_shape"]
        )
        started = time.perf_counter()
        image, deep = vision.run(
            None,
            {
                "pixel_values": pixels,
                "interp_indices": np.array(r["interp_indices"], dtype=np.int64),
                "interp_weights": np.array(r["interp_weights"], dtype=np.float32),
                "rotary_pos_ids": np.array(r["rotary_pos_ids"], dtype=np.int64),
            },
        )
        ids = np.array([r["input_ids"]], dtype=np.int64)
        (embeds,) = embed.run(None, {"input_ids": ids})
        rows = ids[0] == cfg["tokens"]["image_pad"]
        embeds[0, rows] = image
        stack = np.zeros((deep.shape[0], 1, ids.shape[1], t["hidden_size"]), dtype=np.float32)
        stack[:, 0, rows] = deep
        past = {
            f"past_key_values.{i}.{k}": np.zeros((1, t["kv_heads"], 0, t["head_dim"]), dtype=np.float32)
            for i in range(t["layers"])
            for k in ("key", "value")
        }
        feeds = {
            "inputs_embeds": embeds,
            "attention_mask": np.ones((1, ids.shape[1]), dtype=np.int64),
            "position_ids": np.array(r["position_ids"], dtype=np.int64)[:, None, :],
            "deepstack": stack,
            **past,
        }
        out = []
        length = ids.shape[1]
        prefill = decode_started = None
        for step in range(len(r["generated"])):
            results = decoder.run(None, feeds)
            if step == 0:
                prefill = time.perf_counter() - started
                decode_started = time.perf_counter()
            token = int(results[0][0].argmax())
            out.append(token)
            names = [o.name for o in decoder.get_outputs()][1:]
            past = {n.replace("present", "past_key_values"): v for n, v in zip(names, results[1:])}
            (embeds,) = embed.run(None, {"input_ids": np.array([[token]], dtype=np.int64)})
            pos = length + r["rope_delta"]
            length += 1
            feeds = {
                "inputs_embeds": embeds,
                "attention_mask": np.ones((1, length), dtype=np.int64),
                "position_ids": np.full((3, 1, 1), pos, dtype=np.int64),
                "deepstack": np.zeros((deep.shape[0], 1, 1, t["hidden_size"]), dtype=np.float32),
                **past,
            }
        timings.append((name, prefill, (len(out) - 1) / (time.perf_counter() - decode_started)))
        same = out == r["generated"]
        ok &= same
        if rounds:
            continue
        print(f"{name}: {'identical' if same else 'DIFFERENT'} ({len(out)} tokens)")
        if not same:
            print("  onnx:        ", out)
            print("  transformers:", r["generated"])
    return ok, timings


if __name__ == "__main__":
    if sys.argv[1] == "--bench":
        rounds, model_dir = int(sys.argv[2]), Path(sys.argv[3])
        timings = [t for _ in range(rounds) for t in run(model_dir, rounds)[1] if t[0] == "resized"]
        print(
            json.dumps(
                {
                    "prefill_ms": 1000 * sum(t[1] for t in timings) / len(timings),
                    "decode_tokens_per_s": sum(t[2] for t in timings) / len(timings),
                }
            )
        )
    else:
        sys.exit(0 if run(Path(sys.argv[1]))[0] else 1)
