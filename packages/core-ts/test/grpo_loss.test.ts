// Tests of the fused GRPO loss (src/ops/grpoLoss.ts): against the shared PyTorch fixtures
// (copied as fixtures/grpo/shared_*), against tools/oracle/gen_grpo.py's fixtures (every
// aggregation, beta on/off, each KL, dual clip, both clip bounds, fully masked sequences, V not a
// multiple of the chunk, N = 1, temperature ≠ 1), against the unfused composition of existing ops,
// gradcheck in f64, and bad input.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as F from '../src/index.js';
import { type Tensor, tensor, noGrad, gradcheck } from '../src/index.js';
import { grpoLoss, tokenLogprobs, type GrpoConfig, type GrpoLossArgs } from '../src/ops/grpoLoss.js';
import { loadManifest, loadTensor, readValues, relError } from './fixtures.js';

const DIR = join(__dirname, 'fixtures', 'grpo');
const CASES = readdirSync(DIR).sort();

interface Loaded { args: GrpoLossArgs; m: ReturnType<typeof loadManifest>; dir: string; refs: Record<string, number[]> }

/** Builds grpoLoss arguments from a fixture (shared kernels.py format or gen_grpo.py format). */
function load(name: string, chunkTokens = 0): Loaded {
  const dir = join(DIR, name);
  const m = loadManifest(dir);
  const t = (k: string) => loadTensor(dir, m.tensors[k]);
  const vals = (k: string) => readValues(dir, m.tensors[k]);
  const p = m.params as Record<string, any>;
  let args: GrpoLossArgs;
  const refs: Record<string, number[]> = { dh: vals('dh'), dW: vals('dW'), logp: vals('logp'), entropy: vals('entropy') };
  if (name.startsWith('shared_')) {
    const cu = vals('cu_seqlens');
    const seq: number[] = [];
    for (let s = 0; s + 1 < cu.length; s++) for (let i = cu[s]; i < cu[s + 1]; i++) seq.push(s);
    const config: GrpoConfig = {
      epsLow: p.eps_low, epsHigh: p.eps_high, dualClip: p.dual_clip_c ?? false, beta: p.beta, kl: p.kl_type,
      temperature: p.temperature, aggregation: p.loss_agg_mode, normLength: p.norm_len, computeEntropy: true, chunkTokens,
    };
    args = {
      hidden: t('h').requiresGrad_(), weight: t('W').requiresGrad_(), targets: t('targets'),
      advantages: t('advantages'), mask: tensor(vals('loss_mask'), { dtype: 'f32' }),
      seqIndex: tensor(seq, { dtype: 'i32' }), numSeqs: cu.length - 1,
      oldLogprobs: t('old_logp'), refLogprobs: t('ref_logp'), config,
    };
  } else {
    const has = (k: string) => k in m.tensors;
    const config: GrpoConfig = { ...(p as GrpoConfig), dualClip: p.dualClip || false, chunkTokens };
    args = {
      hidden: t('h').requiresGrad_(), weight: t('W').requiresGrad_(), bias: has('b') ? t('b').requiresGrad_() : null,
      targets: t('targets'), advantages: t('adv'), mask: t('mask'), seqIndex: t('seqIndex'), numSeqs: p.numSeqs,
      oldLogprobs: has('old') ? t('old') : null, refLogprobs: has('ref') ? t('ref') : null, config,
    };
    if (has('db')) refs.db = vals('db');
  }
  return { args, m, dir, refs };
}

function dispose(a: GrpoLossArgs) {
  for (const t of [a.hidden, a.weight, a.bias, a.targets, a.advantages, a.mask, a.seqIndex, a.oldLogprobs, a.refLogprobs]) t?.dispose();
}

function near(a: number, b: number, tol: number) {
  expect(Math.abs(a - b)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b)));
}

describe('grpoLoss vs PyTorch fixtures', () => {
  for (const name of CASES) {
    for (const chunk of [0, 7]) {
      it(`${name} (chunkTokens ${chunk || 'auto'})`, () => {
        const { args, m, refs } = load(name, chunk);
        const { loss, stats } = grpoLoss(args);
        const s = m.scalars as Record<string, number>;
        near(loss.item(), s.loss, 2e-5);
        near(stats.loss, s.loss, 2e-5);
        if (name.startsWith('shared_')) {
          near(stats.clipFracLow + stats.clipFracHigh, s.pg_clipfrac, 1e-9);
          near(stats.pgLoss, s.pg_loss, 2e-5);
          if ('kl_loss' in s) near(stats.klLoss, s.kl_loss, 2e-5);
        } else {
          for (const k of ['pgLoss', 'klLoss', 'clipFracLow', 'clipFracHigh', 'clipFracDual', 'approxKl', 'klRef', 'meanRatio', 'entropy', 'tokens']) {
            near((stats as any)[k], s[k], 2e-5);
          }
        }
        loss.backward();
        expect(relError(args.hidden.grad!.dataNumbers(), refs.dh)).toBeLessThan(2e-5);
        expect(relError(args.weight.grad!.dataNumbers(), refs.dW)).toBeLessThan(2e-5);
        if (refs.db) expect(relError(args.bias!.grad!.dataNumbers(), refs.db)).toBeLessThan(2e-5);
        // The no-grad pass gives the same log-probs and entropy.
        const lp = noGrad(() => tokenLogprobs({ hidden: args.hidden, weight: args.weight, bias: args.bias, targets: args.targets,
          temperature: args.config!.temperature, computeEntropy: true, chunkTokens: chunk }));
        expect(relError(lp.logprobs.dataNumbers(), refs.logp)).toBeLessThan(2e-6);
        expect(relError(lp.entropy!.dataNumbers(), refs.entropy)).toBeLessThan(2e-6);
        lp.logprobs.dispose(); lp.entropy!.dispose(); loss.dispose();
        dispose(args);
      });
    }
  }
});

/** The unfused composition of existing ops: linear → logSoftmax → gather → ratio → clip → KL →
 *  aggregation (aggregation weights computed on the host from mask and seqIndex). */
function unfused(a: GrpoLossArgs): Tensor {
  const c = a.config ?? {};
  const T = c.temperature ?? 1, lo = 1 - (c.epsLow ?? 0.2), hi = 1 + (c.epsHigh ?? 0.2), beta = c.beta ?? 0;
  const N = a.hidden.shape[0];
  const logits = F.linear(a.hidden, a.weight, a.bias ?? null).mul(1 / T);
  const logp = F.logSoftmax(logits, -1).gather(1, a.targets.reshape([N, 1])).reshape([N]);
  const old = a.oldLogprobs ?? logp.detach();
  const r = F.clamp(logp.sub(old), -20, 20).exp();
  const negA = a.advantages.neg();
  const clip1 = F.maximum(r.mul(negA), F.clamp(r, lo, hi).mul(negA));
  const pg = c.dualClip ? F.where(a.advantages.lt(0), F.minimum(negA.mul(c.dualClip), clip1), clip1) : clip1;
  let per = pg;
  if (a.refLogprobs) {
    let kl: Tensor;
    if (c.kl === 'k1') kl = logp.sub(a.refLogprobs);
    else if (c.kl === 'k2') kl = logp.sub(a.refLogprobs).square().mul(0.5);
    else { const d = F.clamp(a.refLogprobs.sub(logp), -20, 20); kl = F.clamp(d.exp().sub(d).sub(1), -10, 10); }
    per = pg.add(kl.mul(beta));
  }
  const mask = a.mask.dataNumbers(), seq = a.seqIndex.dataNumbers();
  const cnt = new Array(a.numSeqs).fill(0);
  mask.forEach((m, i) => { cnt[seq[i]] += m; });
  const S = cnt.filter((x) => x > 0).length, tot = mask.reduce((x, y) => x + y, 0);
  const agg = c.aggregation ?? 'token-mean';
  const w = mask.map((m, i) => {
    if (agg === 'token-mean') return tot > 0 ? m / tot : 0;
    if (agg === 'seq-mean-token-sum-norm') return m / c.normLength!;
    if (cnt[seq[i]] <= 0) return 0;
    return agg === 'seq-mean-token-mean' ? m / (cnt[seq[i]] * S) : m / S;
  });
  return per.mul(tensor(w, { dtype: per.dtype })).sum();
}

describe('grpoLoss vs the unfused composition of existing ops', () => {
  for (const name of CASES.filter((n) => !n.startsWith('shared_'))) {
    it(name, () => {
      const fused = load(name), plain = load(name);
      const { loss } = grpoLoss(fused.args);
      const l2 = unfused(plain.args);
      near(loss.item(), l2.item(), 2e-5);
      loss.backward();
      l2.backward();
      expect(relError(fused.args.hidden.grad!.dataNumbers(), plain.args.hidden.grad!.dataNumbers())).toBeLessThan(5e-5);
      expect(relError(fused.args.weight.grad!.dataNumbers(), plain.args.weight.grad!.dataNumbers())).toBeLessThan(5e-5);
      if (fused.args.bias) expect(relError(fused.args.bias.grad!.dataNumbers(), plain.args.bias!.grad!.dataNumbers())).toBeLessThan(5e-5);
      dispose(fused.args); dispose(plain.args);
    });
  }
  it('scales the saved gradients by the incoming gradient', () => {
    const a = load('tokmean_basic'), b = load('tokmean_basic');
    grpoLoss(a.args).loss.mul(3).backward();
    grpoLoss(b.args).loss.backward();
    expect(relError(a.args.weight.grad!.dataNumbers(), b.args.weight.grad!.dataNumbers().map((x) => 3 * x))).toBeLessThan(1e-6);
    dispose(a.args); dispose(b.args);
  });
  it('bf16 model: gradients come back in bf16, close to the f32 result', () => {
    const a = load('seqmeantokmean_k1');
    const h16 = a.args.hidden.detach().to('bf16').requiresGrad_(), w16 = a.args.weight.detach().to('bf16').requiresGrad_();
    const b16 = a.args.bias!.detach().to('bf16').requiresGrad_();
    const { loss } = grpoLoss({ ...a.args, hidden: h16, weight: w16, bias: b16 });
    expect(loss.dtype).toBe('f32');
    loss.backward();
    expect(w16.grad!.dtype).toBe('bf16');
    near(loss.item(), (a.m.scalars as any).loss, 5e-2);
    expect(relError(w16.grad!.dataNumbers(), a.refs.dW)).toBeLessThan(5e-2);
    dispose(a.args);
  });
});

describe('grpoLoss gradcheck (f64)', () => {
  it('tiny case, every aggregation, dual clip and k3', () => {
    const a = load('fullmask_seqmean');
    for (const aggregation of ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'] as const) {
      const h = noGrad(() => a.args.hidden.detach().narrow(0, 0, 12).narrow(1, 0, 6).contiguous());
      const w = noGrad(() => a.args.weight.detach().narrow(0, 0, 23).narrow(1, 0, 6).contiguous());
      const b = F.randn([23], { dtype: 'f32' });
      const tg = tensor(a.args.targets.dataNumbers().slice(0, 12).map((x) => x % 23), { dtype: 'i32' });
      const sl = (t: Tensor) => tensor(t.dataNumbers().slice(0, 12), { dtype: 'f32' });
      const cfg: GrpoConfig = { aggregation, normLength: 5, dualClip: 2, beta: 0.1, kl: 'k3', epsHigh: 0.28, temperature: 0.8, chunkTokens: 5 };
      const r = gradcheck((hh, ww, bb) => grpoLoss({
        hidden: hh, weight: ww, bias: bb, targets: tg, advantages: sl(a.args.advantages), mask: sl(a.args.mask),
        seqIndex: tensor(a.args.seqIndex.dataNumbers().slice(0, 12), { dtype: 'i32' }), numSeqs: a.args.numSeqs,
        oldLogprobs: sl(a.args.oldLogprobs!), refLogprobs: sl(a.args.refLogprobs!), config: cfg,
      }).loss, [h, w, b], { atol: 1e-6, rtol: 1e-5 });
      expect(r.ok, `${aggregation}: ${r.worst}`).toBe(true);
    }
    dispose(a.args);
  });
});

describe('grpoLoss bad input', () => {
  const base = (): GrpoLossArgs => ({
    hidden: F.randn([4, 3]), weight: F.randn([5, 3]), targets: tensor([0, 1, 2, 4], { dtype: 'i32' }),
    advantages: tensor([1, -1, 0.5, 2]), mask: tensor([1, 1, 0, 1]), seqIndex: tensor([0, 0, 1, 1], { dtype: 'i32' }), numSeqs: 2,
  });
  it('target outside [0, V)', () => {
    expect(() => grpoLoss({ ...base(), targets: tensor([0, 1, 5, 0], { dtype: 'i32' }) })).toThrow(/grpoLoss: targets\[2\] = 5 is outside \[0, 5\)/);
    expect(() => grpoLoss({ ...base(), targets: tensor([0, -1, 2, 0], { dtype: 'i32' }) })).toThrow(/targets\[1\] = -1/);
    expect(() => tokenLogprobs({ ...base(), targets: tensor([0, 1, 9, 0], { dtype: 'i32' }) })).toThrow(/tokenLogprobs: targets\[2\] = 9/);
  });
  it('length mismatches', () => {
    expect(() => grpoLoss({ ...base(), targets: tensor([0, 1, 2], { dtype: 'i32' }) })).toThrow(/grpoLoss: targets \[3\] must be \[4\]/);
    expect(() => grpoLoss({ ...base(), advantages: tensor([1, 2]) })).toThrow(/grpoLoss: advantages \[2\] must be \[4\]/);
    expect(() => grpoLoss({ ...base(), mask: tensor([1, 1, 1, 1, 1]) })).toThrow(/grpoLoss: mask \[5\] must be \[4\]/);
    expect(() => grpoLoss({ ...base(), seqIndex: tensor([0, 0, 1], { dtype: 'i32' }) })).toThrow(/grpoLoss: seqIndex \[3\] must be \[4\]/);
    expect(() => grpoLoss({ ...base(), oldLogprobs: tensor([0, 0]) })).toThrow(/grpoLoss: oldLogprobs \[2\] must be \[4\]/);
    expect(() => grpoLoss({ ...base(), weight: F.randn([5, 2]) })).toThrow(/grpoLoss: weight \[5, 2\] must be \[V, 3\]/);
  });
  it('seqIndex outside [0, numSeqs)', () => {
    expect(() => grpoLoss({ ...base(), seqIndex: tensor([0, 0, 2, 1], { dtype: 'i32' }) })).toThrow(/grpoLoss: seqIndex\[2\] = 2 is outside \[0, numSeqs = 2\)/);
    expect(() => grpoLoss({ ...base(), seqIndex: tensor([0, -1, 1, 1], { dtype: 'i32' }) })).toThrow(/seqIndex\[1\] = -1/);
    expect(() => grpoLoss({ ...base(), numSeqs: 0 })).toThrow(/numSeqs must be an integer >= 1/);
  });
  it('beta > 0 without refLogprobs', () => {
    expect(() => grpoLoss({ ...base(), config: { beta: 0.1 } })).toThrow(/grpoLoss: beta = 0.1 > 0 needs refLogprobs/);
  });
  it('non-finite advantages', () => {
    expect(() => grpoLoss({ ...base(), advantages: tensor([1, NaN, 0, 0]) })).toThrow(/grpoLoss: advantages\[1\] = nan is not finite/);
    expect(() => grpoLoss({ ...base(), advantages: tensor([1, 0, Infinity, 0]) })).toThrow(/advantages\[2\] = inf is not finite/);
  });
  it('bad config and dtypes', () => {
    expect(() => grpoLoss({ ...base(), config: { aggregation: 'seq-mean-token-sum-norm' } })).toThrow(/needs config.normLength/);
    expect(() => grpoLoss({ ...base(), config: { aggregation: 'mean' as any } })).toThrow(/aggregation must be one of/);
    expect(() => grpoLoss({ ...base(), config: { kl: 'k4' as any } })).toThrow(/kl must be 'k1', 'k2' or 'k3'/);
    expect(() => grpoLoss({ ...base(), config: { temperature: 0 } })).toThrow(/temperature must be finite and > 0/);
    expect(() => grpoLoss({ ...base(), config: { dualClip: 0.5 } })).toThrow(/dualClip must be 0 \(off\) or > 1/);
    expect(() => grpoLoss({ ...base(), targets: tensor([0, 1, 2, 4], { dtype: 'i64' }) })).toThrow(/targets must be i32/);
    expect(() => grpoLoss({ ...base(), mask: tensor([1, -1, 0, 1]) })).toThrow(/mask\[1\] = -1 is negative/);
  });
});
