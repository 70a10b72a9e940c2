"""Exports a Qwen3-VL checkpoint to the ONNX model directory ocrd's `qwen3vl` engine loads.

    python3 -m venv target/qwen-venv
    target/qwen-venv/bin/pip install -r tools/qwen3vl_export/requirements.txt
    # a real model, downloaded by you (e.g. `hf download Qwen/Qwen3-VL-2B-Instruct --local-dir ..`):
    target/qwen-venv/bin/python tools/qwen3vl_export/export.py CHECKPOINT_DIR OUT_DIR
    # the test fixture: a tiny randomly initialised Qwen3-VL, with reference outputs
    target/qwen-venv/bin/python tools/qwen3vl_export/export.py --tiny-random tests/fixtures/qwen3vl-tiny

The output directory holds:
- vision.onnx: pixel_values [N, 3*2*16*16], interp_indices/interp_weights [N, 4] (the learned
  position grid resampled to this image), rotary_pos_ids [N, 2] (row, column of each patch) →
  image_embeds [N/4, H], deepstack_embeds [L, N/4, H]. One image per run, so attention is full:
  the per-image split and the Python loops of transformers stay outside the graph.
- embed_tokens.onnx: input_ids [1, S] → inputs_embeds [1, S, H].
- decoder.onnx: inputs_embeds [1, S, H], attention_mask [1, P+S], position_ids [3, 1, S],
  deepstack [L, 1, S, H] (added after decoder layer i; zero at text rows and when decoding),
  past_key_values.{i}.key/value [1, kv_heads, P, head_dim] → logits [1, V] (last position),
  present.{i}.key/value.
- tokenizer.json, and ocrd-model.json: dimensions, token ids, preprocessing, default prompt.
- With --tiny-random, reference/: for each test image, what transformers computes (the
  preprocessing tensors, the 3-D position ids and greedy `generate()` token ids), which the Rust
  tests must reproduce exactly.
"""

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import transformers
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.cache_utils import DynamicCache
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil,
    smart_resize,
)
from transformers.vision_utils import (
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PROMPT = "qwenvl html"
NEW_TOKENS = 40  # reference generation length (the tests need >= 32)


# --------------------------------------------------------------------------------------------
# The tiny model


SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def tiny_tokenizer():
    """A byte-level BPE of 1024 tokens with Qwen's pre-tokenizer and special tokens (ids 0-6)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Qwen2's split pattern (letters, numbers one by one, punctuation, whitespace runs).
    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    corpus = [
        p.read_text()
        for p in sorted((REPO.parent / "shared" / "eval").rglob("*.gt.txt"))
    ] + ["<html><body><h1 data-bbox=\"0 0 1000 100\">Title</h1><p data-bbox=\"10 20 30 40\">x</p></body></html>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    assert tok.get_vocab_size() <= 1024, tok.get_vocab_size()
    for i, s in enumerate(SPECIAL):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def tiny_model(seed):
    torch.manual_seed(seed)
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=1024,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=4096,
            rope_parameters=dict(
                rope_type="default", rope_theta=5e6, mrope_section=[4, 2, 2], mrope_interleaved=True
            ),
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=16,
            temporal_patch_size=2,
            spatial_merge_size=2,
            out_hidden_size=64,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0, 1],
        ),
        image_token_id=5,
        video_token_id=6,
        vision_start_token_id=3,
        vision_end_token_id=4,
        tie_word_embeddings=False,
    )
    model = Qwen3VLForConditionalGeneration(config)
    # Random init is small; spread the weights so the tokens depend on the image.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Export


class Vision(torch.nn.Module):
    def __init__(self, visual):
        super().__init__()
        self.visual = visual

    def forward(self, pixel_values, interp_indices, interp_weights, rotary_pos_ids):
        n = pixel_values.shape[0]
        out = self.visual(
            pixel_values,
            grid_thw=torch.tensor([[1, 1, 1]]),  # unused: everything it gives is passed in
            interp_indices=interp_indices,
            interp_weights=interp_weights,
            position_ids=rotary_pos_ids,
            cu_seqlens=torch.stack([torch.tensor(0), torch.tensor(n)]).to(torch.int32),
        )
        return out.pooler_output, torch.stack(out.deepstack_features)


def one_image_attention(self, hidden_states, cu_seqlens, position_embeddings=None, **kwargs):
    """Qwen3VLVisionAttention.forward for one image: plain attention over every patch (the
    original splits by `cu_seqlens.tolist()`, which tracing would freeze)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    n = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=self.scaling)
    out = out.transpose(1, 2).reshape(n, -1)
    return self.proj(out)


class Decoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.lm = model.model.language_model
        self.head = model.lm_head
        self.layers = len(self.lm.layers)

    def forward(self, inputs_embeds, attention_mask, position_ids, deepstack, *past):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(self.layers)]
        cache = DynamicCache(ddp_cache_data=pairs, config=self.lm.config)
        s = inputs_embeds.shape[1]
        total = attention_mask.shape[1]
        p = total - s
        # Causal over the whole cache, and nothing to padding: [1, 1, S, P+S], 0 or -inf.
        query = torch.arange(s).unsqueeze(1) + p
        key = torch.arange(total).unsqueeze(0)
        allowed = (key <= query) & (attention_mask[:, None, None, :] > 0)
        mask = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
        hidden = inputs_embeds
        cos_sin = self.lm.rotary_emb(hidden, position_ids)
        for i, layer in enumerate(self.lm.layers):
            hidden = layer(hidden, position_embeddings=cos_sin, attention_mask=mask, cache=cache, use_cache=True)
            if i < deepstack.shape[0]:
                hidden = hidden + deepstack[i]
        hidden = self.lm.norm(hidden[:, -1:, :])
        logits = self.head(hidden)[:, 0, :]
        present = []
        for i in range(self.layers):
            present += [cache.layers[i].keys, cache.layers[i].values]
        return (logits, *present)


class Embed(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.model.language_model.embed_tokens

    def forward(self, input_ids):
        return self.embed(input_ids)


def export(model, out: Path):
    from transformers.models.qwen3_vl import modeling_qwen3_vl as m

    m.Qwen3VLVisionAttention.forward = one_image_attention
    cfg = model.config
    vc, tc = cfg.vision_config, cfg.text_config
    side = int(vc.num_position_embeddings**0.5)
    grid = torch.tensor([[1, 4, 6]])
    n = 24
    idx, w = get_vision_interpolation_indices_and_weights(
        grid, side, mode="bilinear", align_corners=True, spatial_merge_size=vc.spatial_merge_size
    )
    pos = get_vision_position_ids(grid, vc.spatial_merge_size)
    pixels = torch.randn(n, 3 * vc.temporal_patch_size * vc.patch_size**2)
    torch.onnx.export(
        Vision(model.model.visual),
        (pixels, idx, w, pos),
        out / "vision.onnx",
        input_names=["pixel_values", "interp_indices", "interp_weights", "rotary_pos_ids"],
        output_names=["image_embeds", "deepstack_embeds"],
        dynamic_axes={
            "pixel_values": {0: "patches"},
            "interp_indices": {0: "patches"},
            "interp_weights": {0: "patches"},
            "rotary_pos_ids": {0: "patches"},
            "image_embeds": {0: "tokens"},
            "deepstack_embeds": {1: "tokens"},
        },
        opset_version=18,
        dynamo=False,
    )
    torch.onnx.export(
        Embed(model),
        (torch.tensor([[1, 2, 3]]),),
        out / "embed_tokens.onnx",
        input_names=["input_ids"],
        output_names=["inputs_embeds"],
        dynamic_axes={"input_ids": {1: "sequence"}, "inputs_embeds": {1: "sequence"}},
        opset_version=18,
        dynamo=False,
    )
    layers, kv, hd, h = tc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim, tc.hidden_size
    deep = len(vc.deepstack_visual_indexes)
    s, p = 3, 2
    past = []
    names_in, names_out, axes = [], [], {}
    for i in range(layers):
        for kind in ("key", "value"):
            past.append(torch.randn(1, kv, p, hd))
            names_in.append(f"past_key_values.{i}.{kind}")
            names_out.append(f"present.{i}.{kind}")
            axes[names_in[-1]] = {2: "past"}
            axes[names_out[-1]] = {2: "total"}
    axes.update(
        {
            "inputs_embeds": {1: "sequence"},
            "attention_mask": {1: "total"},
            "position_ids": {2: "sequence"},
            "deepstack": {2: "sequence"},
        }
    )
    torch.onnx.export(
        Decoder(model),
        (
            torch.randn(1, s, h),
            torch.ones(1, p + s, dtype=torch.int64),
            torch.arange(p, p + s).view(1, 1, s).expand(3, 1, s).contiguous(),
            torch.zeros(deep, 1, s, h),
            *past,
        ),
        out / "decoder.onnx",
        input_names=["inputs_embeds", "attention_mask", "position_ids", "deepstack", *names_in],
        output_names=["logits", *names_out],
        dynamic_axes=axes,
        opset_version=18,
        dynamo=False,
    )


def model_json(model, tokenizer_ids, processor_cfg):
    cfg = model.config
    vc, tc = cfg.vision_config, cfg.text_config
    return {
        "format": 1,
        "transformers": transformers.__version__,
        "text": {
            "hidden_size": tc.hidden_size,
            "layers": tc.num_hidden_layers,
            "kv_heads": tc.num_key_value_heads,
            "head_dim": tc.head_dim,
            "vocab_size": tc.vocab_size,
            "mrope_section": tc.rope_parameters["mrope_section"],
        },
        "vision": {
            "patch_size": vc.patch_size,
            "temporal_patch_size": vc.temporal_patch_size,
            "merge_size": vc.spatial_merge_size,
            "num_grid_per_side": int(vc.num_position_embeddings**0.5),
            "deepstack_layers": len(vc.deepstack_visual_indexes),
        },
        "tokens": {
            "image_pad": cfg.image_token_id,
            "vision_start": cfg.vision_start_token_id,
            "vision_end": cfg.vision_end_token_id,
            "im_start": tokenizer_ids["<|im_start|>"],
            "im_end": tokenizer_ids["<|im_end|>"],
            "eos": sorted({tokenizer_ids["<|im_end|>"], tokenizer_ids["<|endoftext|>"]}),
        },
        "preprocess": processor_cfg,
        "prompt": DEFAULT_PROMPT,
        # Qwen3-VL answers with boxes on a 0-1000 grid over the image.
        "bbox_scale": 1000,
    }


# --------------------------------------------------------------------------------------------
# References


def prompt_ids(tok, n_image_tokens, prompt):
    ids = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    sp = {s: tok.token_to_id(s) for s in SPECIAL}
    return (
        [sp["<|im_start|>"]]
        + ids("user\n")
        + [sp["<|vision_start|>"]]
        + [sp["<|image_pad|>"]] * n_image_tokens
        + [sp["<|vision_end|>"]]
        + ids(prompt)
        + [sp["<|im_end|>"]]
        + ids("\n")
        + [sp["<|im_start|>"]]
        + ids("assistant\n")
    )


def test_images():
    """Three pieces of a sample page: square, not square, and one that must be resized."""
    page = Image.open(REPO.parent / "shared" / "eval" / "public" / "page_000.png").convert("RGB")
    return {
        "square": page.crop((250, 500, 314, 564)),  # 64 x 64
        "wide": page.crop((250, 500, 378, 564)),  # 128 x 64
        "resized": page.crop((250, 500, 400, 590)),  # 150 x 90 -> 160 x 96
    }


def references(model, tok, processor, out: Path, processor_cfg):
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    summary = {}
    eos = sorted({tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")})
    for name, image in test_images().items():
        image.save(ref / f"{name}.png")
        batch = processor(images=[image], return_tensors="pt")
        pixel_values, grid = batch["pixel_values"], batch["image_grid_thw"]
        n_tokens = int(grid.prod()) // (model.config.vision_config.spatial_merge_size**2)
        ids = torch.tensor([prompt_ids(tok, n_tokens, DEFAULT_PROMPT)])
        mm = (ids == model.config.image_token_id).to(torch.int32)
        position_ids, delta = model.model.get_rope_index(ids, mm, image_grid_thw=grid)
        vc = model.config.vision_config
        side = int(vc.num_position_embeddings**0.5)
        idx, w = get_vision_interpolation_indices_and_weights(
            grid, side, mode="bilinear", align_corners=True, spatial_merge_size=vc.spatial_merge_size
        )
        rot = get_vision_position_ids(grid, vc.spatial_merge_size)
        with torch.no_grad():
            generated = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=pixel_values,
                image_grid_thw=grid,
                mm_token_type_ids=mm,
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos[0],
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = generated.sequences[0, ids.shape[1] :].tolist()
        # The smallest gap between the best and second-best logit on the way: greedy parity in
        # another runtime is only meaningful when no step is a near tie.
        margins = [float(torch.topk(s[0], 2).values.diff().abs()) for s in generated.scores]
        pixel_values.numpy().astype("<f4").tofile(ref / f"{name}.pixel_values.f32")
        summary[name] = {
            "image_size": list(image.size),
            "pixel_values_shape": list(pixel_values.shape),
            "grid_thw": grid[0].tolist(),
            "input_ids": ids[0].tolist(),
            "position_ids": position_ids[:, 0, :].tolist(),
            "rope_delta": int(delta[0, 0]),
            "interp_indices": idx.tolist(),
            "interp_weights": w.tolist(),
            "rotary_pos_ids": rot.tolist(),
            "generated": new,
            "min_margin": min(margins),
        }
        print(f"{name}: {image.size} -> grid {grid[0].tolist()}, {len(new)} tokens, min margin {min(margins):.4f}")
    (ref / "reference.json").write_text(json.dumps(summary))
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", help="a Hugging Face Qwen3-VL checkpoint directory")
    ap.add_argument("out", help="the model directory to write")
    ap.add_argument("--tiny-random", action="store_true", help="export a tiny random model with references")
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    if args.tiny_random:
        model = tiny_model(args.seed)
        tok = tiny_tokenizer()
        tok.save(str(out / "tokenizer.json"))
        processor_cfg = {
            "min_pixels": 32 * 32,
            "max_pixels": 256 * 256,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        }
    else:
        if not args.checkpoint:
            sys.exit("give a checkpoint directory, or --tiny-random")
        ckpt = Path(args.checkpoint)
        model = Qwen3VLForConditionalGeneration.from_pretrained(ckpt, dtype=torch.float32).eval()
        shutil.copy(ckpt / "tokenizer.json", out / "tokenizer.json")
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        pre = json.loads((ckpt / "preprocessor_config.json").read_text())
        size = pre.get("size", {})
        processor_cfg = {
            "min_pixels": size.get("shortest_edge", pre.get("min_pixels")),
            "max_pixels": size.get("longest_edge", pre.get("max_pixels")),
            "mean": pre["image_mean"],
            "std": pre["image_std"],
        }
    model.config._attn_implementation = "sdpa"
    model.model.visual.config._attn_implementation = "sdpa"
    ids = {s: tok.token_to_id(s) for s in SPECIAL}
    (out / "ocrd-model.json").write_text(json.dumps(model_json(model, ids, processor_cfg), indent=2) + "\n")
    if args.tiny_random:
        processor = Qwen2VLImageProcessorPil(
            patch_size=16,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=processor_cfg["mean"],
            image_std=processor_cfg["std"],
            size={"shortest_edge": processor_cfg["min_pixels"], "longest_edge": processor_cfg["max_pixels"]},
        )
        summary = references(model, tok, processor, out, processor_cfg)
        for name, r in summary.items():
            assert len(r["generated"]) == NEW_TOKENS, f"{name} stopped early: pick another --seed"
            assert r["min_margin"] > 1e-3, f"{name} has a near tie: pick another --seed"
    export(model, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
