#!/usr/bin/env python3
"""The Qwen2.5-VL image pipeline in Pillow + NumPy, as transformers' slow
Qwen2VLImageProcessor runs it: open, EXIF transpose, convert('RGB'), smart_resize, Pillow
BICUBIC resize on uint8, rescale (f64 -> f32), normalize (f32), patchify (reshape/transpose),
concatenate. Timed over the files given; prints one JSON line (benchmarks/processor_side.mjs
runs it next to Fovea's ImageProcessor.pack on the same files).

Usage: python3 processor_pillow.py --max-pixels 1003520 --repeat 3 FILE...
"""
import argparse, json, math, time
import numpy as np
from PIL import Image, ImageOps

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def smart_resize(h, w, factor=28, min_pixels=3136, max_pixels=1003520):
    if max(h, w) / min(h, w) > 200:
        raise ValueError('aspect ratio')
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        b = math.sqrt(h * w / max_pixels)
        hb, wb = max(factor, math.floor(h / b / factor) * factor), max(factor, math.floor(w / b / factor) * factor)
    elif hb * wb < min_pixels:
        b = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * b / factor) * factor, math.ceil(w * b / factor) * factor
    return hb, wb


def process(path, max_pixels, ps=14, tp=2, m=2):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert('RGB')
        h, w = smart_resize(im.height, im.width, max_pixels=max_pixels)
        im = im.resize((w, h), resample=Image.BICUBIC, reducing_gap=None)
        x = np.asarray(im)
    x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - MEAN) / STD
    x = x.transpose(2, 0, 1)[None]                      # [T=1, C, H, W]
    x = np.concatenate([x] * tp, 0)                      # T = temporal_patch_size
    gh, gw = h // ps, w // ps
    x = x.reshape(1, tp, 3, gh // m, m, ps, gw // m, m, ps).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gh * gw, 3 * tp * ps * ps), (1, gh, gw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--max-pixels', type=int, default=1003520)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('files', nargs='+')
    a = ap.parse_args()
    best = float('inf')
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        out = [process(f, a.max_pixels) for f in a.files]
        pv = np.concatenate([o[0] for o in out], 0)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({'seconds': best, 'images_per_s': len(a.files) / best, 'rows': int(pv.shape[0]),
                      'grid0': out[0][1], 'checksum': float(pv.astype(np.float64).sum()),
                      'pillow': Image.__version__, 'numpy': np.__version__}))


if __name__ == '__main__':
    main()
