// What a built shared library asks of the machine that loads it: the newest glibc symbol
// version it references (= the oldest glibc it runs on), the libstdc++ ABI it needs (none when
// libstdc++ is linked statically) and its NEEDED libraries. Uses binutils (objdump, readelf),
// which every machine that builds the prebuilt packages has.
import { execFileSync } from 'node:child_process';

const byVersion = (a, b) => {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
};
const newest = (text, prefix) => {
  const found = [...text.matchAll(new RegExp(`\\b${prefix}_([0-9][0-9.]*)`, 'g'))].map((m) => m[1].replace(/\.$/, ''));
  return found.length ? found.sort(byVersion).at(-1) : null;
};

export function inspectBinary(path) {
  const symbols = execFileSync('objdump', ['-T', path], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const dynamic = execFileSync('readelf', ['-d', path], { encoding: 'utf8' });
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)].map((m) => m[1]);
  return {
    minGlibc: newest(symbols, 'GLIBC'),
    minGlibcxx: needed.some((n) => n.startsWith('libstdc++')) ? newest(symbols, 'GLIBCXX') : null,
    libstdcxx: needed.some((n) => n.startsWith('libstdc++')) ? 'dynamic' : 'static',
    needed,
  };
}
