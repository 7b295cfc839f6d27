/** Fitting a session's history into a model's context: keep the system messages and the newest whole turns that fit. */
import { TabAgentError } from '../../protocol/errors.js';

export interface FitMessage {
  role: string;
  content: string;
}

export interface FitOptions<M> {
  /** The model's context size in tokens. */
  contextTokens: number;
  /** Tokens kept free for the reply (max_tokens) and the chat template's overhead. */
  reserveTokens: number;
  /** Tokens one message costs in the prompt; pre-compute asynchronously and look up here if tokenizing is async. */
  countTokens: (message: M) => number;
}

export interface FitResult<M> {
  /** The kept messages, in their original order. */
  messages: M[];
  /** How many (non-system) messages were left out, oldest first. */
  dropped: number;
  /** Tokens the kept messages cost. */
  tokens: number;
}

/**
 * The policy (docs/storage.md, "Fitting history into the context"):
 * 1. Every system message is kept, wherever it stands.
 * 2. The rest is cut into turns: a turn starts at a user message and runs to the next one (the
 *    assistant reply, tool and function messages stay with the question that caused them).
 * 3. Turns are taken newest first while they fit in contextTokens - reserveTokens; the first that
 *    does not fit is dropped whole, and so is everything older (no gaps in the middle of a conversation).
 * 4. The newest turn (the question being asked) must fit with the system messages; if it cannot,
 *    that is an error naming the sizes, not a silently truncated question.
 */
export function fitHistoryToContext<M extends FitMessage>(messages: readonly M[], opts: FitOptions<M>): FitResult<M> {
  const budget = opts.contextTokens - opts.reserveTokens;
  const cost = messages.map((m) => opts.countTokens(m));
  let systemTokens = 0;
  const turns: number[][] = [];
  messages.forEach((m, i) => {
    if (m.role === 'system') {
      systemTokens += cost[i] ?? 0;
      return;
    }
    const current = turns[turns.length - 1];
    if (m.role === 'user' || !current) turns.push([i]);
    else current.push(i);
  });

  const keep = new Set<number>();
  messages.forEach((m, i) => {
    if (m.role === 'system') keep.add(i);
  });
  let used = systemTokens;
  let keptTurns = 0;
  for (let t = turns.length - 1; t >= 0; t--) {
    const turn = turns[t] ?? [];
    const turnTokens = turn.reduce((sum, i) => sum + (cost[i] ?? 0), 0);
    if (used + turnTokens > budget) {
      if (t === turns.length - 1) {
        throw new TabAgentError(
          'BAD_REQUEST',
          `the newest turn (${turnTokens} tokens) and the system messages (${systemTokens} tokens) do not fit the model's context: ` +
            `${opts.contextTokens} tokens less ${opts.reserveTokens} reserved for the reply`,
          { context_tokens: opts.contextTokens, reserve_tokens: opts.reserveTokens, turn_tokens: turnTokens, system_tokens: systemTokens },
        );
      }
      break;
    }
    used += turnTokens;
    keptTurns++;
    for (const i of turn) keep.add(i);
  }
  const dropped = turns.slice(0, turns.length - keptTurns).reduce((n, turn) => n + turn.length, 0);
  return { messages: messages.filter((_, i) => keep.has(i)), dropped, tokens: used };
}
