// Grad mode: while disabled (inside noGrad), ops record no graph, as torch.no_grad().
let enabled = true;

export function isGradEnabled(): boolean { return enabled; }

/** Runs fn with graph recording off. */
export function noGrad<T>(fn: () => T): T {
  const prev = enabled;
  enabled = false;
  try { return fn(); } finally { enabled = prev; }
}

/** Runs fn with graph recording on (inside a noGrad block, for example). */
export function enableGrad<T>(fn: () => T): T {
  const prev = enabled;
  enabled = true;
  try { return fn(); } finally { enabled = prev; }
}
