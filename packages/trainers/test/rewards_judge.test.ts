// The LLM-judge reward against a local OpenAI-compatible server (node:http) that returns
// verdicts, errors, rate limits, slow and malformed responses. Also checks that the API key is
// sent in the header and never appears in an error.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fillTemplate, llmJudgeReward, parseVerdict, explainReward, type RewardContext } from '../src/rewards/index.js';

const KEY = 'sk-test-SECRET-7c1f0e';
const KEY_ENV = 'FOVEA_TEST_JUDGE_KEY';
let server: Server;
let base = '';
const hits = new Map<string, number>();
const seen: { auth?: string; body: { model: string; messages: { role: string; content: string }[] } }[] = [];

const reply = (content: string) => JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] });

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      if (req.url !== '/v1/chat/completions' || req.method !== 'POST') {
        res.writeHead(404).end('not found');
        return;
      }
      const body = JSON.parse(raw);
      seen.push({ auth: req.headers.authorization, body });
      const model: string = body.model;
      const n = (hits.get(model) ?? 0) + 1;
      hits.set(model, n);
      const ok = (content: string) => res.writeHead(200, { 'content-type': 'application/json' }).end(reply(content));
      switch (model) {
        case 'yes': return ok('CORRECT');
        case 'no': return ok('INCORRECT');
        case 'score': return ok('Score: 0.75');
        case 'flaky500': return n <= 2 ? void res.writeHead(500).end('boom') : ok('correct');
        case 'always503': return void res.writeHead(503).end('overloaded');
        case 'ratelimit': return n === 1 ? void res.writeHead(429, { 'retry-after': '0' }).end('slow down') : ok('yes');
        case 'slow': return void setTimeout(() => ok('CORRECT'), 3000);
        case 'echo-key': return void res.writeHead(401).end(`invalid key: ${req.headers.authorization}`);
        case 'garbage': return void res.writeHead(200).end('<html>not json</html>');
        case 'rambling': return ok('Hmm, hard to say.');
        default: return void res.writeHead(400).end('unknown model');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  process.env[KEY_ENV] = KEY;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  delete process.env[KEY_ENV];
});

const ctx: RewardContext = { response: 'It is \\boxed{Paris}', row: { answer: 'Paris', question: 'Capital of France?' } };
const judge = (model: string, extra: Partial<Parameters<typeof llmJudgeReward>[0]> = {}) =>
  llmJudgeReward({ baseUrl: base, model, apiKeyEnv: KEY_ENV, timeoutMs: 2000, retries: 3, backoffMs: 5, ...extra });

describe('llmJudgeReward', () => {
  it('scores verdicts and sends the key, prompt and model', async () => {
    expect(await judge('yes')(ctx)).toBe(1);
    expect(await judge('no')(ctx)).toBe(0);
    expect(await judge('score')(ctx)).toBe(0.75);
    const last = seen[seen.length - 1]!;
    expect(last.auth).toBe(`Bearer ${KEY}`);
    expect(last.body.model).toBe('score');
    const prompt = last.body.messages[0]!.content;
    expect(prompt).toContain('QUESTION: Capital of France?');
    expect(prompt).toContain('REFERENCE: Paris');
    expect(prompt).toContain('RESPONSE: It is \\boxed{Paris}');
    const custom = judge('yes', { promptTemplate: 'Q={question} A={answer} R={response} {unknown}', systemPrompt: 'be strict' });
    const d = await explainReward(custom, ctx);
    expect(d).toMatchObject({ score: 1, details: { verdict: 'CORRECT', attempts: 1 } });
    const msgs = seen[seen.length - 1]!.body.messages;
    expect(msgs[0]).toEqual({ role: 'system', content: 'be strict' });
    expect(msgs[1]!.content).toBe('Q=Capital of France? A=Paris R=It is \\boxed{Paris} {unknown}');
  });

  it('retries 5xx and 429, then succeeds', async () => {
    const d = await explainReward(judge('flaky500'), ctx);
    expect(d).toMatchObject({ score: 1, details: { attempts: 3 } });
    const r = await explainReward(judge('ratelimit'), ctx);
    expect(r).toMatchObject({ score: 1, details: { attempts: 2 } });
  });

  it('fails clearly after the retries, naming endpoint and status, or scores 0 with onFailure zero', async () => {
    hits.delete('always503');
    await expect(judge('always503', { retries: 2 })(ctx)).rejects.toThrow(
      new RegExp(`judge at ${base.replace(/[.]/g, '\\.')}/chat/completions \\(model always503\\) failed after 3 attempt\\(s\\): HTTP 503`),
    );
    expect(hits.get('always503')).toBe(3);
    const z = await explainReward(judge('always503', { retries: 1, onFailure: 'zero' }), ctx);
    expect(z.score).toBe(0);
    expect(String(z.details?.error)).toMatch(/HTTP 503/);
  });

  it('does not retry other 4xx and never leaks the key, even when the server echoes it', async () => {
    hits.delete('echo-key');
    let msg = '';
    try {
      await judge('echo-key')(ctx);
    } catch (e) {
      msg = (e as Error).message + String((e as Error).stack);
    }
    expect(msg).toMatch(/HTTP 401/);
    expect(msg).toContain('***');
    expect(msg).not.toContain(KEY);
    expect(hits.get('echo-key')).toBe(1);
    const z = await explainReward(judge('echo-key', { onFailure: 'zero' }), ctx);
    expect(JSON.stringify(z)).not.toContain(KEY);
  });

  it('times out slow responses with AbortController', async () => {
    hits.delete('slow');
    const t0 = performance.now();
    await expect(judge('slow', { timeoutMs: 100, retries: 1 })(ctx)).rejects.toThrow(/failed after 2 attempt\(s\): timed out after 100 ms/);
    // Not a speed target: the server answers after 3 s, so waiting out both attempts would take
    // over 6 s; finishing sooner shows each attempt was aborted at its timeout.
    expect(performance.now() - t0).toBeLessThan(5500);
    expect(hits.get('slow')).toBe(2);
  });

  it('reports malformed replies, unreadable verdicts and network errors', async () => {
    await expect(judge('garbage')(ctx)).rejects.toThrow(/not JSON/);
    await expect(judge('rambling')(ctx)).rejects.toThrow(/unreadable verdict/);
    // a port nothing listens on
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const dead = llmJudgeReward({ baseUrl: `http://user:${KEY}@127.0.0.1:${port}/v1`, model: 'm', apiKeyEnv: KEY_ENV, retries: 1, backoffMs: 1 });
    let msg = '';
    try {
      await dead(ctx);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/failed after 2 attempt\(s\): network error/);
    expect(msg).not.toContain(KEY);
  });

  it('validates its configuration', () => {
    expect(() => llmJudgeReward({ baseUrl: base, model: 'm', apiKeyEnv: 'FOVEA_SURELY_UNSET_VAR' })).toThrow(/FOVEA_SURELY_UNSET_VAR \(apiKeyEnv\) is not set/);
    expect(() => llmJudgeReward({ baseUrl: '', model: 'm' })).toThrow(/baseUrl is required/);
    expect(() => llmJudgeReward({ baseUrl: 'not a url', model: 'm' })).toThrow(/not a valid URL/);
    expect(() => llmJudgeReward({ baseUrl: base, model: '' })).toThrow(/model is required/);
    expect(() => llmJudgeReward({ baseUrl: base, model: 'm', onFailure: 'ignore' as 'zero' })).toThrow(/onFailure/);
  });

  it('parses verdicts and fills templates', () => {
    expect(parseVerdict('CORRECT')).toBe(1);
    expect(parseVerdict('incorrect.')).toBe(0);
    expect(parseVerdict('Yes')).toBe(1);
    expect(parseVerdict('score: 0.3')).toBe(0.3);
    expect(parseVerdict('1')).toBe(1);
    expect(parseVerdict('0')).toBe(0);
    expect(parseVerdict('maybe')).toBeNull();
    expect(fillTemplate('{a}{b}', { a: '{b}', b: 'x' })).toBe('{b}x'); // no re-substitution
  });
});
