// The interface every rollout tool implements (crop/grounding, search, user plugins).
// A multi-turn rollout generates until `trigger(text)` says the assistant text now ends with
// a complete call, runs the tool on that text, and appends the tool's output as a new user
// turn (text and images). Tool turns are inserted by the system, so the trainer gives their
// tokens loss mask 0; the tool never sees or returns token ids (the sampled ids stay as they
// were sampled, nothing is decoded and re-encoded).
import type { RgbImage } from '@fovea/models';

/** What a tool hands back to the rollout: the content of the next user turn plus a report. */
export interface ToolOutput<Report = unknown> {
  /** False when the call could not be served (invalid box, empty query...): the turn says so. */
  ok: boolean;
  /** Text of the inserted user turn (already formatted by the tool's template). */
  text: string;
  /** Images of the inserted user turn, in order (a crop, or the original image again). */
  images: RgbImage[];
  /** Per-call facts for metrics and the report (valid box, both frames, result ids...). */
  report: Report;
}

/**
 * A tool the rollout loop can call. `Ctx` is what the rollout supplies besides the model's
 * text: the crop tool needs the original image and the frame the model saw; search needs none.
 */
export interface Tool<Ctx = void, Report = unknown> {
  /** Stable name, used in configs, metrics and reports ('crop', 'search'). */
  readonly name: string;
  /**
   * Does this assistant text end with a complete call (trailing whitespace ignored)? Checked
   * as tokens are decoded for display, so generation can stop right after the call.
   */
  trigger(text: string): boolean;
  /** Runs the call found in `text`. Never throws for bad model output: returns ok = false. */
  run(text: string, ctx: Ctx): Promise<ToolOutput<Report>>;
}

/** Fills `{name}` placeholders in one pass (values are never re-scanned). */
export function fillTemplate(template: string, values: Record<string, string | number>, where: string): string {
  return template.replace(/\{(\w+)\}/g, (m, key: string) => {
    if (!(key in values)) throw new Error(`${where}: unknown placeholder {${key}} in template; known: ${Object.keys(values).map((k) => `{${k}}`).join(', ')}`);
    return String(values[key]);
  });
}

/** Checks a template at construction time: only `allowed` placeholders may appear. */
export function checkTemplate(template: unknown, allowed: readonly string[], where: string): string {
  if (typeof template !== 'string') throw new Error(`${where}: template must be a string, got ${typeof template}`);
  for (const m of template.matchAll(/\{(\w+)\}/g)) {
    if (!allowed.includes(m[1])) {
      throw new Error(`${where}: unknown placeholder {${m[1]}} in template; allowed: ${allowed.map((k) => `{${k}}`).join(', ')}`);
    }
  }
  return template;
}
