# Reference fixtures for the fused AdamW step and clipGradNorm, from PyTorch (1.13, CPU).
#   adamw: 5 steps of torch.optim.AdamW(foreach=False) per case; after each step the
#     parameter, exp_avg and exp_avg_sq. bf16 cases emulate the standard mixed-precision
#     recipe: an f32 master copy stepped by torch's AdamW, rounded to bf16 (round to nearest
#     even, as Tensor.to(torch.bfloat16)) after each step; gradients bf16 or f32.
#   clip: torch.nn.utils.clip_grad_norm_ on a list of gradients: total norm and the clipped
#     gradients, for several maxNorm / normType values.
# Output: packages/core-ts/test/fixtures/adamw/{manifest.json,data.bin}; each tensor is a
# slice of data.bin: {"offset": bytes, "dtype": "f32"|"bf16", "shape": [...]}.
# Run: /usr/bin/python3 tools/oracle/gen_adamw.py
import json
import os

import torch

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'packages', 'core-ts', 'test', 'fixtures', 'adamw')
blob = bytearray()


def put(t):
    """Appends t's raw little-endian bytes to data.bin; returns its manifest entry."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        raw, dt = t.view(torch.int16).numpy().tobytes(), 'bf16'
    else:
        raw, dt = t.to(torch.float32).numpy().tobytes(), 'f32'
    entry = {'offset': len(blob), 'dtype': dt, 'shape': list(t.shape)}
    blob.extend(raw)
    while len(blob) % 8:
        blob.append(0)
    return entry


ADAMW_CASES = [
    # name, shape, param dtype, grad dtype, lr, betas, eps, weight_decay
    ('f32_n1031_wd', [1031], 'f32', 'f32', 1e-3, (0.9, 0.999), 1e-8, 1e-2),
    ('f32_33x31_nowd', [33, 31], 'f32', 'f32', 3e-3, (0.8, 0.99), 1e-6, 0.0),
    ('f32_n1_bigwd', [1], 'f32', 'f32', 1e-1, (0.5, 0.9), 1e-3, 1e-1),
    ('f32_n7', [7], 'f32', 'f32', 1e-2, (0.95, 0.9999), 1e-8, 5e-2),
    ('f32_4x5x3_beta0', [4, 5, 3], 'f32', 'f32', 2e-2, (0.0, 0.5), 1e-8, 0.0),
    ('bf16_n1031_bf16grad', [1031], 'bf16', 'bf16', 1e-2, (0.9, 0.999), 1e-8, 1e-2),
    ('bf16_7x9_f32grad', [7, 9], 'bf16', 'f32', 3e-2, (0.85, 0.995), 1e-6, 0.0),
]


def adamw_case(name, shape, pdt, gdt, lr, betas, eps, wd):
    p0 = torch.randn(*shape)
    if pdt == 'bf16':
        p_bf16 = p0.to(torch.bfloat16)
        master = p_bf16.to(torch.float32).clone().requires_grad_(True)
    else:
        master = p0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([master], lr=lr, betas=betas, eps=eps, weight_decay=wd, foreach=False)
    case = {'name': name, 'paramDtype': pdt, 'gradDtype': gdt, 'lr': lr, 'betas': list(betas),
            'eps': eps, 'weightDecay': wd, 'param0': put(p_bf16 if pdt == 'bf16' else p0), 'steps': []}
    for _ in range(5):
        g = torch.randn(*shape) * 0.1
        g = g.to(torch.bfloat16) if gdt == 'bf16' else g
        master.grad = g.to(torch.float32)
        opt.step()
        st = opt.state[master]
        step = {'grad': put(g), 'expAvg': put(st['exp_avg']), 'expAvgSq': put(st['exp_avg_sq'])}
        if pdt == 'bf16':
            step['param'] = put(master.detach().to(torch.bfloat16))
            step['master'] = put(master)
        else:
            step['param'] = put(master)
        case['steps'].append(step)
    return case


CLIP_CASES = [
    ('l2_clip', 1.0, 2.0),
    ('l2_noclip', 1e3, 2.0),
    ('inf_clip', 0.05, float('inf')),
    ('l1_clip', 2.0, 1.0),
]


def clip_case(name, max_norm, norm_type):
    shapes = [[7], [33, 31], [1], [4, 5, 3]]
    grads = [torch.randn(*s) * 0.2 for s in shapes]
    ps = [torch.zeros(*s, requires_grad=True) for s in shapes]
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    return {'name': name, 'maxNorm': max_norm, 'normType': 'inf' if norm_type == float('inf') else norm_type,
            'totalNorm': float(total), 'grads': [put(g) for g in grads], 'clipped': [put(p.grad) for p in ps]}


def main():
    torch.manual_seed(20261122)
    manifest = {'torch': torch.__version__,
                'adamw': [adamw_case(*c) for c in ADAMW_CASES],
                'clip': [clip_case(*c) for c in CLIP_CASES]}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'data.bin'), 'wb') as f:
        f.write(blob)
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    print(f'wrote {len(blob)} bytes, {len(manifest["adamw"])} adamw cases, {len(manifest["clip"])} clip cases')


if __name__ == '__main__':
    main()
