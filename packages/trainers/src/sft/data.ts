// SFT data: a validating JSONL reader of conversations, one JSON object per line.
//
// Row format (blank lines are ignored):
//   { "messages": [ { "role": "system" | "user" | "assistant",
//                     "content": string | [ {"type": "image", "image": "rel/path.png"} | {"type": "text", "text": "..."} ] } ],
//     "id"?: string | number }
// Image paths are relative to the JSONL file's directory and, as in the RL data (dataset.ts, whose
// path rules and bad-row reporting are reused here), may not leave it unless allowOutside.
// Images belong to system/user turns: an assistant turn is text only (the loss covers assistant
// tokens and must never cover image tokens). A conversation needs at least one assistant turn,
// and does not start with one (the turn before it is what the model answers).
// The RL row format of dataset.ts ({id, images, question, choices?, answer}) is accepted too: it
// becomes [user: images + formatQuestion(question, choices), assistant: answer].
//
// Invariant (as dataset.ts): a bad row never throws; it is reported (file:line: reason: detail),
// counted per reason and skipped. Only an unreadable dataset file throws.
import * as path from 'node:path';
import {
  type Check, type DatasetStats, type PathContext, type ReadOptions, emptyStats, readValidatedJsonl,
  resolveImagePath, validateRow,
} from '../data/dataset.js';
import { formatQuestion } from '../rollout/templates.js';

export type SftRole = 'system' | 'user' | 'assistant';
export type SftContent = string | ({ type: 'image'; image: string } | { type: 'text'; text: string })[];
/** A message whose image paths are absolute (resolved against the dataset directory). */
export interface SftMessage { role: SftRole; content: SftContent }

export interface SftRow {
  id: string;
  messages: SftMessage[];
  source: { file: string; line: number };
}

const invalid = (message: string): Check<never> => ({ ok: false, reason: 'invalid_field', message });
const typeName = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const ROLES = new Set(['system', 'user', 'assistant']);

/** Validates a conversation row (fields and image paths). */
async function validateConversation(r: Record<string, unknown>, ctx: PathContext, source: { file: string; line: number }): Promise<Check<SftRow>> {
  let id: string;
  if (r.id === undefined) id = `${path.basename(source.file)}:${source.line}`;
  else if (typeof r.id === 'string' && r.id.length > 0) id = r.id;
  else if (typeof r.id === 'number' && Number.isFinite(r.id)) id = String(r.id);
  else return invalid(`"id" must be a non-empty string or a number when given, got ${typeName(r.id)}`);
  const msgs = r.messages;
  if (!Array.isArray(msgs) || msgs.length === 0) return invalid(`"messages" must be a non-empty array of {role, content}, got ${typeName(msgs)}`);
  const out: SftMessage[] = [];
  let assistants = 0;
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i] as Record<string, unknown>;
    const at = `"messages[${i}]`;
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return invalid(`${at}" must be an object {role, content}, got ${typeName(m)}`);
    const extra = Object.keys(m).filter((k) => k !== 'role' && k !== 'content');
    if (extra.length) return invalid(`${at}" has unknown key(s) ${extra.map((k) => JSON.stringify(k)).join(', ')}; a message is {role, content}`);
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      return invalid(`${at}.role" must be "system", "user" or "assistant", got ${typeof m.role === 'string' ? JSON.stringify(m.role) : typeName(m.role)}`);
    }
    const role = m.role as SftRole;
    if (role === 'assistant') {
      if (i === 0 || out.every((p) => p.role === 'system')) return invalid(`${at}" is an assistant turn with no user turn before it; a conversation starts with a system or user message`);
      assistants++;
    }
    if (typeof m.content === 'string') { out.push({ role, content: m.content }); continue; }
    if (!Array.isArray(m.content)) return invalid(`${at}.content" must be a string or an array of {type: "image"|"text"} items, got ${typeName(m.content)}`);
    const items: Exclude<SftContent, string> = [];
    for (let j = 0; j < m.content.length; j++) {
      const it = m.content[j] as Record<string, unknown>;
      const where = `${at}.content[${j}]"`;
      if (it === null || typeof it !== 'object' || Array.isArray(it)) return invalid(`${where} must be {type: "image", image} or {type: "text", text}, got ${typeName(it)}`);
      if (it.type === 'text') {
        if (typeof it.text !== 'string') return invalid(`${where} is a text item whose "text" must be a string, got ${typeName(it.text)}`);
        items.push({ type: 'text', text: it.text });
      } else if (it.type === 'image') {
        if (role === 'assistant') return invalid(`${where} is an image in an assistant turn; images belong in system/user turns (the loss never covers image tokens)`);
        if (typeof it.image !== 'string' || it.image.length === 0 || it.image.includes('\0')) {
          return invalid(`${where} is an image item whose "image" must be a non-empty path string, got ${typeName(it.image)}`);
        }
        const p = await resolveImagePath(it.image, ctx);
        if (!p.ok) return p;
        items.push({ type: 'image', image: p.value });
      } else {
        return invalid(`${where} has type ${JSON.stringify(it.type)}; expected "image" or "text"`);
      }
    }
    out.push({ role, content: items });
  }
  if (assistants === 0) return invalid('"messages" has no assistant turn: SFT learns the assistant turns, so a row needs at least one');
  return { ok: true, value: { id, messages: out, source } };
}

/** Validates one parsed row: a conversation ({messages}) or an RL row ({question, answer, images}). */
export async function validateSftRow(raw: unknown, ctx: PathContext, source: { file: string; line: number }): Promise<Check<SftRow>> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return invalid(`row must be a JSON object, got ${typeName(raw)}`);
  const r = raw as Record<string, unknown>;
  if ('messages' in r) return validateConversation(r, ctx, source);
  if (!('question' in r)) return invalid('row has neither "messages" (a conversation) nor "question" (the RL row format)');
  const v = await validateRow(raw, ctx, source);
  if (!v.ok) return v;
  const row = v.value;
  const user: SftContent = [...row.images.map((image) => ({ type: 'image' as const, image })), { type: 'text', text: formatQuestion(row.question, row.choices) }];
  return { ok: true, value: { id: row.id, messages: [{ role: 'user', content: user }, { role: 'assistant', content: row.answer }], source } };
}

/** Streams the valid rows of an SFT JSONL file; bad rows are reported and skipped. */
export function readSftRows(file: string, opts: ReadOptions = {}): AsyncGenerator<SftRow> {
  return readValidatedJsonl(file, validateSftRow, opts, 'sft data');
}

/** Every valid row in memory (the DataIterator shuffles indices into it) and the counts. */
export async function loadSftDataset(file: string, opts: Omit<ReadOptions, 'stats'> = {}): Promise<{ rows: SftRow[]; stats: DatasetStats }> {
  const stats = emptyStats();
  const rows: SftRow[] = [];
  for await (const r of readSftRows(file, { ...opts, stats })) rows.push(r);
  return { rows, stats };
}
