// Prompt templates of multi-turn tool rollouts (generateToolRollouts), as plain config objects:
//   system     : how to call the tool and how to answer (no placeholders);
//   user       : the first user turn's text, after the prompt's image(s); {question};
//   toolResult : the text of each inserted tool turn (loss mask 0), after the tool's image(s);
//                {result} is the tool's own formatted output (search: <information>…</information>),
//                {question} the question again.
// SEARCH_TEMPLATE is our own wording of the MMSearch-R1 protocol: search only when needed, one
// query per <search>…</search>, results come back as a user turn, the final answer in \boxed{}.
import { checkTemplate } from '../tools/types.js';

export interface ToolTemplate {
  /** System prompt (empty string: the chat template's default system turn). */
  system: string;
  /** First user turn text after the image(s); {question}. */
  user: string;
  /** Inserted tool turn text after the tool's image(s); {result}, optionally {question}. */
  toolResult: string;
}

export const SEARCH_TEMPLATE: ToolTemplate = {
  system:
    'You answer questions about images. If the image and what you already know are enough, reason step by step ' +
    'and put the final answer inside \\boxed{}. If you need a fact you do not have, ask the search engine: write one ' +
    'short query between <search> and </search> and stop right after </search>. The results will be shown to you ' +
    'between <information> and </information>; you may then search again with a better query or give the answer. ' +
    'Search only when you have to.',
  user: '{question}',
  toolResult: '{result}\n\nAnswer the question if these results are enough; otherwise search again with a different query.',
};

/** Throws on missing fields or unknown placeholders, so config errors surface before any rollout. */
export function checkToolTemplate(t: ToolTemplate): ToolTemplate {
  if (!t || typeof t !== 'object') throw new Error('tool template: expected an object {system, user, toolResult}');
  checkTemplate(t.system, [], 'tool template system');
  checkTemplate(t.user, ['question'], 'tool template user');
  checkTemplate(t.toolResult, ['result', 'question'], 'tool template toolResult');
  if (!t.toolResult.includes('{result}')) {
    throw new Error('tool template toolResult: must contain {result} (where the tool\'s output goes), got ' + JSON.stringify(t.toolResult));
  }
  return t;
}
