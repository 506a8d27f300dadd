// Devices: 'cpu', 'cuda' (= 'cuda:0') or 'cuda:N'. The native layer numbers them -1 (host)
// and N (CUDA ordinal).
import native from '@fovea/native';

export type Device = 'cpu' | `cuda` | `cuda:${number}`;

export interface ParsedDevice { readonly name: string; readonly ordinal: number }

const CPU: ParsedDevice = { name: 'cpu', ordinal: -1 };
const checked = new Set<number>();

export function parseDevice(d: unknown, where = 'device'): ParsedDevice {
  if (d === undefined || d === 'cpu') return CPU;
  if (typeof d === 'string') {
    const m = /^cuda(?::(\d+))?$/.exec(d);
    if (m) {
      const ordinal = m[1] === undefined ? 0 : Number(m[1]);
      if (!checked.has(ordinal)) {
        // Throws with what is missing: the sidecar library, the driver, or a GPU.
        native.cudaCheckDevice(ordinal);
        checked.add(ordinal);
      }
      return { name: `cuda:${ordinal}`, ordinal };
    }
  }
  throw new Error(`${where}: unknown device ${JSON.stringify(d)}; expected 'cpu', 'cuda' or 'cuda:N'`);
}

export function deviceName(ordinal: number): string {
  return ordinal < 0 ? 'cpu' : `cuda:${ordinal}`;
}
