// LLM-as-judge reward over an OpenAI-compatible endpoint (POST {baseUrl}/chat/completions).
// Optional and off unless configured; no dependency beyond Node's fetch.
//
// Guarantees:
// - The API key is read from the environment variable named by `apiKeyEnv` at call time and
//   sent only in the Authorization header. It never appears in errors, logs or thrown messages:
//   every message passes through `redact`, which also removes any user:password in the URL
//   (a server echoing the header back in an error body cannot leak it either).
// - Each attempt has a timeout (AbortController covers the request and reading the body).
// - 429, 5xx, network errors and timeouts are retried with exponential backoff (honouring a
//   Retry-After of up to maxBackoffMs); other 4xx fail at once (a bad key will not get better).
// - Failure is explicit: onFailure 'throw' (default) raises an error naming the endpoint and the
//   last status; 'zero' scores 0 and reports the error in the details.

import { truthStrings } from './accuracy.js';
import { makeReward, type DetailedReward, type RewardContext } from './types.js';

export interface JudgeOptions {
  /** e.g. "http://localhost:8000/v1" (the path /chat/completions is appended). */
  baseUrl: string;
  model: string;
  /** Name of the environment variable holding the key. Omit for servers without auth. */
  apiKeyEnv?: string;
  /** Per-attempt timeout. Default 30 000 ms. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 3. */
  retries?: number;
  /** First backoff; doubles each retry (±25% jitter). Default 500 ms. */
  backoffMs?: number;
  /** Cap on one backoff wait, including Retry-After. Default 10 000 ms. */
  maxBackoffMs?: number;
  /** User prompt with {question}, {answer}, {response}, {choices} placeholders. */
  promptTemplate?: string;
  /** Optional system prompt. */
  systemPrompt?: string;
  /** Reads a score in [0, 1] from the judge's text, or null if unreadable. Default parseVerdict. */
  parseVerdict?: (text: string) => number | null;
  onFailure?: 'zero' | 'throw';
  /** Max requests in flight from this reward. Default 8. */
  maxConcurrent?: number;
  maxTokens?: number;
  temperature?: number;
}

export const DEFAULT_JUDGE_PROMPT = [
  'You grade answers. Decide whether the RESPONSE gives the same final answer as the REFERENCE.',
  'Ignore formatting and wording; judge only the final answer.',
  '',
  'QUESTION: {question}',
  'CHOICES: {choices}',
  'REFERENCE: {answer}',
  'RESPONSE: {response}',
  '',
  'Reply with exactly one word: CORRECT or INCORRECT.',
].join('\n');

/**
 * Default verdict reader: CORRECT/YES/TRUE/1 → 1, INCORRECT/NO/FALSE/0 → 0 (the first such word),
 * or "score: x" with x in [0, 1]. Null when the text says none of these.
 */
export function parseVerdict(text: string): number | null {
  const t = text.slice(0, 2000);
  const score = /score\s{0,3}[:=]\s{0,3}([01](?:\.\d{1,6})?)\b/i.exec(t);
  if (score) {
    const v = Number(score[1]);
    if (v >= 0 && v <= 1) return v;
  }
  const word = /\b(incorrect|correct|yes|no|true|false|wrong|right)\b|(?:^|\s)([01])(?:\s|$|\.)/i.exec(t);
  if (!word) return null;
  const w = (word[1] ?? word[2]!).toLowerCase();
  return w === 'correct' || w === 'yes' || w === 'true' || w === 'right' || w === '1' ? 1 : 0;
}

/** Fills {name} placeholders in one pass; inserted text is never re-scanned. Unknown names stay. */
export function fillTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w{1,40})\}/g, (m, k: string) => (Object.hasOwn(values, k) ? values[k]! : m));
}

class JudgeError extends Error {
  constructor(message: string, readonly retryable: boolean, readonly retryAfterMs?: number) {
    super(message);
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function llmJudgeReward(opts: JudgeOptions): DetailedReward {
  if (!opts || typeof opts.baseUrl !== 'string' || opts.baseUrl.length === 0) throw new Error('llmJudgeReward: baseUrl is required (e.g. "http://localhost:8000/v1")');
  if (typeof opts.model !== 'string' || opts.model.length === 0) throw new Error('llmJudgeReward: model is required');
  const endpoint = opts.baseUrl.replace(/\/+$/, '') + '/chat/completions';
  try {
    new URL(endpoint);
  } catch {
    throw new Error(`llmJudgeReward: baseUrl is not a valid URL: ${redactUrl(opts.baseUrl)}`);
  }
  const shownEndpoint = redactUrl(endpoint);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const retries = opts.retries ?? 3;
  const backoffMs = opts.backoffMs ?? 500;
  const maxBackoffMs = opts.maxBackoffMs ?? 10_000;
  const onFailure = opts.onFailure ?? 'throw';
  const template = opts.promptTemplate ?? DEFAULT_JUDGE_PROMPT;
  const verdictOf = opts.parseVerdict ?? parseVerdict;
  if (onFailure !== 'zero' && onFailure !== 'throw') throw new Error(`llmJudgeReward: onFailure must be 'zero' or 'throw', got ${String(onFailure)}`);
  if (!(timeoutMs > 0) || !(retries >= 0) || !Number.isInteger(retries)) throw new Error('llmJudgeReward: timeoutMs must be > 0 and retries a non-negative integer');
  // Fail at construction if the key variable is named but unset: a misconfiguration, not a flake.
  if (opts.apiKeyEnv !== undefined && !process.env[opts.apiKeyEnv]) {
    throw new Error(`llmJudgeReward: environment variable ${opts.apiKeyEnv} (apiKeyEnv) is not set`);
  }

  let inFlight = 0;
  const waiters: (() => void)[] = [];
  const maxConcurrent = Math.max(1, opts.maxConcurrent ?? 8);
  const acquire = async () => {
    while (inFlight >= maxConcurrent) await new Promise<void>((r) => waiters.push(r));
    inFlight++;
  };
  const release = () => {
    inFlight--;
    waiters.shift()?.();
  };

  async function attempt(body: string, key: string | undefined): Promise<string> {
    const redact = (s: string) => (key ? s.split(key).join('***') : s);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      let res: Response;
      try {
        res = await fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
          body,
          signal: controller.signal,
        });
      } catch (e) {
        const why = controller.signal.aborted ? `timed out after ${timeoutMs} ms` : `network error: ${redact((e as Error)?.cause ? String((e as Error & { cause: unknown }).cause) : String(e))}`;
        throw new JudgeError(`${why}`, true);
      }
      let text: string;
      try {
        text = await res.text();
      } catch {
        throw new JudgeError(controller.signal.aborted ? `timed out after ${timeoutMs} ms reading the body (HTTP ${res.status})` : `HTTP ${res.status}, body unreadable`, true);
      }
      if (!res.ok) {
        const retryable = res.status === 429 || res.status >= 500;
        const ra = Number(res.headers.get('retry-after'));
        throw new JudgeError(`HTTP ${res.status}: ${redact(text.slice(0, 200))}`, retryable, Number.isFinite(ra) && ra >= 0 ? ra * 1000 : undefined);
      }
      let content: unknown;
      try {
        content = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message?.content;
      } catch {
        throw new JudgeError(`HTTP ${res.status} but the body is not JSON: ${redact(text.slice(0, 120))}`, false);
      }
      if (typeof content !== 'string') throw new JudgeError(`HTTP ${res.status} but no choices[0].message.content string in the reply`, false);
      return content;
    } finally {
      clearTimeout(timer);
    }
  }

  return makeReward('llm-judge', async (ctx: RewardContext) => {
    const key = opts.apiKeyEnv ? process.env[opts.apiKeyEnv] : undefined;
    if (opts.apiKeyEnv !== undefined && !key) {
      const msg = `llmJudgeReward: environment variable ${opts.apiKeyEnv} (apiKeyEnv) is not set`;
      if (onFailure === 'zero') return { score: 0, details: { error: msg } };
      throw new Error(msg);
    }
    const choices = Array.isArray(ctx.row.choices) ? ctx.row.choices.map((c, i) => `(${String.fromCharCode(65 + i)}) ${c}`).join(' ') : '';
    const prompt = fillTemplate(template, {
      question: typeof ctx.row.question === 'string' ? ctx.row.question : '',
      answer: truthStrings(ctx.row, 'llmJudgeReward').join(' | '),
      response: ctx.response ?? '',
      choices,
    });
    const messages = [...(opts.systemPrompt ? [{ role: 'system', content: opts.systemPrompt }] : []), { role: 'user', content: prompt }];
    const body = JSON.stringify({ model: opts.model, messages, temperature: opts.temperature ?? 0, max_tokens: opts.maxTokens ?? 16 });
    let lastError = '';
    let attempts = 0;
    await acquire();
    try {
      for (let i = 0; i <= retries; i++) {
        attempts++;
        try {
          const content = await attempt(body, key);
          const v = verdictOf(content);
          if (v === null || !Number.isFinite(v)) {
            lastError = `unreadable verdict ${JSON.stringify(content.slice(0, 80))}`;
            break;
          }
          return { score: v, details: { verdict: content.slice(0, 200), attempts } };
        } catch (e) {
          const je = e instanceof JudgeError ? e : new JudgeError(String(e), false);
          lastError = je.message;
          if (!je.retryable || i === retries) break;
          const base = Math.min(maxBackoffMs, backoffMs * 2 ** i) * (0.75 + 0.5 * Math.random());
          await sleep(Math.min(maxBackoffMs, je.retryAfterMs ?? base));
        }
      }
    } finally {
      release();
    }
    const raw = `llmJudgeReward: judge at ${shownEndpoint} (model ${opts.model}) failed after ${attempts} attempt(s): ${lastError}`;
    const msg = key ? raw.split(key).join('***') : raw;
    if (onFailure === 'zero') return { score: 0, details: { error: msg, attempts } };
    throw new Error(msg);
  });
}
