// Prompt templates of the rollouts, as plain config objects (users load their own from YAML/JSON;
// checkTemplates validates the placeholders). Our own wording; the structure is MGPO's:
//   system  : output the key region's coordinates as JSON and stop; the region will be cropped
//             from the original image, enlarged and shown next; then answer in \boxed{}.
//   turn 1  : image(s) + the question + "give the key region's coordinates as JSON".
//   tool    : (inserted by the system, loss mask 0) the crop — or the original image again when
//             the box is invalid — + the question again + "reason, answer in \boxed{}".
// The GRPO template is one user turn: image(s) + question + "reason, answer in \boxed{}".
// Placeholders: {question} (question text with lettered choices), {reason} (why a box was
// rejected), {box} (the crop box in original pixels).
import { checkTemplate } from '../tools/types.js';

export interface MgpoTemplate {
  /** System prompt (empty string: the chat template's default system turn). */
  system: string;
  /** Turn-1 user text after the image(s); {question}. */
  turn1: string;
  /** Tool turn text before the crop when the box is valid; {box}. */
  cropValid: string;
  /** Tool turn text before the original image when the box is invalid or missing; {reason}. */
  cropInvalid: string;
  /** Tool turn text after the image; {question}. */
  turn2: string;
}

export interface GrpoTemplate {
  system: string;
  /** User text after the image(s); {question}. */
  user: string;
}

export const MGPO_TEMPLATE: MgpoTemplate = {
  system:
    'You will see an image and a question about it. First find the part of the image that holds the ' +
    'information needed to answer. Reply with the coordinates of that key region as JSON in a ```json code ' +
    'block, in the form [{"bbox_2d": [x1, y1, x2, y2], "label": "short description"}], and stop right after ' +
    'the block. The system will then crop that region from the original high-resolution image, enlarge it and ' +
    'show it to you. After that, reason step by step and give the final answer inside \\boxed{}.',
  turn1: '{question}\n\nGive the coordinates of the key image region that answers this question as JSON, then stop.',
  cropValid: 'This is the region you selected ({box} in original pixels), cropped from the original image and enlarged:',
  cropInvalid: 'The coordinates you gave could not be used ({reason}). Here is the original image again:',
  turn2: '{question}\n\nUse the images above, reason step by step, and put the final answer inside \\boxed{}.',
};

export const GRPO_TEMPLATE: GrpoTemplate = {
  system: '',
  user: '{question}\n\nReason step by step, then put the final answer inside \\boxed{}.',
};

/** Throws on unknown placeholders or missing fields (config errors surface before any rollout). */
export function checkMgpoTemplate(t: MgpoTemplate): MgpoTemplate {
  if (!t || typeof t !== 'object') throw new Error('mgpo template: expected an object {system, turn1, cropValid, cropInvalid, turn2}');
  checkTemplate(t.system, [], 'mgpo template system');
  checkTemplate(t.turn1, ['question'], 'mgpo template turn1');
  checkTemplate(t.cropValid, ['box'], 'mgpo template cropValid');
  checkTemplate(t.cropInvalid, ['reason'], 'mgpo template cropInvalid');
  checkTemplate(t.turn2, ['question'], 'mgpo template turn2');
  return t;
}

export function checkGrpoTemplate(t: GrpoTemplate): GrpoTemplate {
  if (!t || typeof t !== 'object') throw new Error('grpo template: expected an object {system, user}');
  checkTemplate(t.system, [], 'grpo template system');
  checkTemplate(t.user, ['question'], 'grpo template user');
  return t;
}

/** The question with its choices as lettered lines ("(A) ...") when the row is multiple choice. */
export function formatQuestion(question: string, choices?: readonly string[]): string {
  if (!choices || choices.length === 0) return question;
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  if (choices.length > letters.length) throw new Error(`formatQuestion: at most ${letters.length} choices, got ${choices.length}`);
  return `${question}\n${choices.map((c, i) => `(${letters[i]}) ${c}`).join('\n')}`;
}
