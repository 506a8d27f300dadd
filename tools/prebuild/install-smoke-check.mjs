// Run by tools/install-smoke.sh inside a fresh npm project that installed the packed
// tarballs (never inside the repository): imports @fovea/core, checks a matmul and a causal,
// variable-length flash-attention call against plain JavaScript, checks that the addon came
// from the prebuilt platform package, and that the doctor is satisfied. Exits 1 on any mismatch.
import { flashAttention, matmul, tensor } from '@fovea/core';
import { addonPath, loadReport } from '@fovea/native';
import { doctor } from '@fovea/native/doctor';

let seed = 12345;
const rand = (n) => Float32Array.from({ length: n }, () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 30 - 1;  // [-1, 1)
});
function check(name, got, want, tol) {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  if (got.length !== want.length || !(worst <= tol)) throw new Error(`${name}: max |error| ${worst} > ${tol} (lengths ${got.length}, ${want.length})`);
  console.log(`smoke: ${name} ok (max |error| ${worst.toExponential(2)}, ${want.length} values)`);
}

// matmul [B=2, M=5, K=7] x [2, 7, N=3]
const [B, M, K, N] = [2, 5, 7, 3];
const a = rand(B * M * K), b = rand(B * K * N);
const mm = matmul(tensor(a, { shape: [B, M, K] }), tensor(b, { shape: [B, K, N] })).dataNumbers();
const mmRef = [];
for (let z = 0; z < B; z++) for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
  let s = 0;
  for (let k = 0; k < K; k++) s += a[z * M * K + i * K + k] * b[z * K * N + k * N + j];
  mmRef.push(s);
}
check('matmul', mm, mmRef, 1e-5);

// flash attention: two sequences of lengths 3 and 5 packed as [total=8, H=2, D=4], causal.
const lens = [3, 5], H = 2, D = 4, total = 8, cu = [0, 3, 8], scale = 1 / Math.sqrt(D);
const q = rand(total * H * D), k = rand(total * H * D), v = rand(total * H * D);
const cuT = tensor(Int32Array.from(cu), { dtype: 'i32' });
const { out } = flashAttention(tensor(q, { shape: [total, H, D] }), tensor(k, { shape: [total, H, D] }), tensor(v, { shape: [total, H, D] }),
  { cuSeqlensQ: cuT, cuSeqlensK: cuT, maxSeqlenQ: 5, maxSeqlenK: 5, causal: true });
const attRef = new Array(total * H * D).fill(0);
lens.forEach((len, s) => {
  for (let h = 0; h < H; h++) for (let i = 0; i < len; i++) {
    const row = cu[s] + i, at = (t, d, x) => x[(t * H + h) * D + d];
    const scores = [];
    for (let j = 0; j <= i; j++) {  // causal, same length: key j <= query i
      let dot = 0;
      for (let d = 0; d < D; d++) dot += at(row, d, q) * at(cu[s] + j, d, k);
      scores.push(dot * scale);
    }
    const mx = Math.max(...scores), w = scores.map((x) => Math.exp(x - mx)), z = w.reduce((p, c) => p + c, 0);
    for (let d = 0; d < D; d++) attRef[(row * H + h) * D + d] = w.reduce((p, wj, j) => p + wj * at(cu[s] + j, d, v), 0) / z;
  }
});
check('flashAttention', out.dataNumbers(), attRef, 1e-5);

if (!/node_modules\/@fovea\/native-linux-[a-z0-9]+\/fovea_native\.node$/.test(addonPath)) {
  throw new Error(`smoke: the addon came from ${addonPath} (${loadReport.source}), not from the prebuilt platform package`);
}
console.log(`smoke: addon ${addonPath} (${loadReport.source}); CUDA ${loadReport.cuda.state}`);
const d = await doctor();  // printed by `npx fovea-native doctor` next; here only its verdict
if (!d.ok) throw new Error(`smoke: the doctor reports a problem:\n${d.text}`);
