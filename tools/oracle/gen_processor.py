#!/usr/bin/env python3
"""Processor fixtures for @fovea/models (packages/models/test/fixtures/processor/).

1. Copies the Hugging Face Qwen2VLImageProcessor cases from ../shared/fixtures (processor/*
   and qwen25vl/images/*). pixel_values larger than 1.5 MB keep only rows PV_KEEP (first and
   last 32 rows) plus a `pixel_values_rows` i32 tensor naming them; every other tensor
   (resized_image, grids, window_index, cu_window_seqlens, rotary_pos_ids) is kept whole.
2. Writes extra Pillow cases (`pillow_resize/*`): Image.resize(BICUBIC, reducing_gap=None)
   on uint8 noise + gradients for shapes the HF cases miss (one axis only, strong downscale
   like the 4032x3024 benchmark, upscale of a 1-pixel side).
3. Writes small encoded files (`encoded/*`) and what Pillow decodes them to
   (ImageOps.exif_transpose + convert('RGB'), as transformers' load_image does).

Usage: /usr/bin/python3 tools/oracle/gen_processor.py [--shared /work/shared/fixtures]
Needs numpy and Pillow (Debian python3-pil).
"""
import argparse, io, json, os, shutil
import numpy as np
from PIL import Image, ImageOps

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'packages', 'models', 'test', 'fixtures', 'processor')
PV_LIMIT = 3 << 19  # 1.5 MB: keeps exact_224x224 whole, subsets packed and the big cases


def write_case(d, name, tensors, params, generator='gen_processor.py'):
    os.makedirs(d, exist_ok=True)
    man = {'case': name, 'generator': generator, 'seed': 0, 'params': params, 'scalars': {}, 'tensors': {}}
    for k, (arr, dt) in tensors.items():
        fn = k + '.bin'
        os.makedirs(os.path.dirname(os.path.join(d, fn)), exist_ok=True)
        np.ascontiguousarray(arr).astype({'u8': np.uint8, 'i32': np.int32, 'f32': np.float32}[dt]).tofile(os.path.join(d, fn))
        man['tensors'][k] = {'file': fn, 'dtype': dt, 'shape': list(arr.shape)}
    with open(os.path.join(d, 'manifest.json'), 'w') as f:
        json.dump(man, f, indent=1)


def copy_shared(shared):
    for group in ('processor', 'qwen25vl/images'):
        src_root = os.path.join(shared, group)
        for case in sorted(os.listdir(src_root)):
            if case == 'B_1000x700':  # 2 MB of input; A and C cover the same processor path
                continue
            src, dst = os.path.join(src_root, case), os.path.join(OUT, 'hf' if group == 'processor' else 'hf_model_images', case)
            man = json.load(open(os.path.join(src, 'manifest.json')))
            if os.path.exists(dst):
                shutil.rmtree(dst)
            os.makedirs(dst)
            for name, e in list(man['tensors'].items()):
                os.makedirs(os.path.dirname(os.path.join(dst, e['file'])), exist_ok=True)
                path = os.path.join(src, e['file'])
                if name == 'pixel_values' and os.path.getsize(path) > PV_LIMIT:
                    pv = np.fromfile(path, np.float32).reshape(e['shape'])
                    rows = np.r_[0:32, pv.shape[0] - 32:pv.shape[0]].astype(np.int32)
                    pv[rows].tofile(os.path.join(dst, e['file']))
                    rows.tofile(os.path.join(dst, 'pixel_values_rows.bin'))
                    man['tensors'][name] = dict(e, shape=[len(rows), e['shape'][1]], full_shape=e['shape'])
                    man['tensors']['pixel_values_rows'] = {'file': 'pixel_values_rows.bin', 'dtype': 'i32', 'shape': [len(rows)]}
                else:
                    shutil.copyfile(path, os.path.join(dst, e['file']))
            man['copied_from'] = os.path.relpath(src, shared)
            with open(os.path.join(dst, 'manifest.json'), 'w') as f:
                json.dump(man, f, indent=1)


def test_image(h, w, rng):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(h + w - 2, 1)], -1)
    noise = rng.integers(0, 256, (h, w, 3))
    mask = rng.random((h, w, 1)) < 0.3
    return np.where(mask, noise, base).astype(np.uint8)


def pillow_resize_cases(rng):
    # (src_h, src_w, dst_h, dst_w)
    for sh, sw, dh, dw in [(403, 302, 112, 84), (302, 403, 84, 112), (57, 61, 57, 140), (57, 61, 9, 61),
                           (1, 37, 28, 56), (120, 90, 112, 84)]:
        img = test_image(sh, sw, rng)
        out = np.asarray(Image.fromarray(img).resize((dw, dh), resample=Image.BICUBIC, reducing_gap=None))
        write_case(os.path.join(OUT, 'pillow_resize', f'{sh}x{sw}_to_{dh}x{dw}'), f'{sh}x{sw}_to_{dh}x{dw}',
                   {'image': (img, 'u8'), 'resized_image': (out, 'u8')}, {'pillow': Image.__version__})


def encoded_cases(rng):
    d = os.path.join(OUT, 'encoded')
    os.makedirs(d, exist_ok=True)
    img = test_image(40, 56, rng)
    expected = {}

    def save(name, im, **kw):
        im.save(os.path.join(d, name), **kw)
        with Image.open(os.path.join(d, name)) as r:
            expected[name] = np.asarray(ImageOps.exif_transpose(r).convert('RGB'))

    save('rgb.png', Image.fromarray(img))
    rgba = np.concatenate([img, rng.integers(0, 256, (40, 56, 1), dtype=np.uint8)], -1)
    save('rgba.png', Image.fromarray(rgba, 'RGBA'))
    save('gray.png', Image.fromarray(img[..., 0], 'L'))
    save('palette.gif', Image.fromarray(img).convert('P', palette=Image.ADAPTIVE, colors=64))
    save('rgb.tiff', Image.fromarray(img))
    save('rgb.webp', Image.fromarray(img), lossless=True)
    save('rgb.jpg', Image.fromarray(img), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    save('orient6.jpg', Image.fromarray(img), quality=95, exif=exif.tobytes())
    tensors = {k.replace('.', '_'): (v, 'u8') for k, v in expected.items()}
    write_case(os.path.join(d, 'expected'), 'encoded', tensors, {'files': sorted(expected), 'pillow': Image.__version__})


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--shared', default=os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'fixtures'))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    copy_shared(a.shared)
    pillow_resize_cases(rng)
    encoded_cases(rng)
