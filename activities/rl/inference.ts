/**
 * The rollout worker's side of its inference server (FORGE_INFERENCE_URL): an OpenAI-compatible `POST
 * /v1/completions` with `n` samples and token logprobs (vLLM, SGLang, or the reference trainer's `serve`), and SGLang's
 * `POST /update_weights_from_disk` to load a policy version. Every answer is checked with zod.
 */
import { z } from 'zod';
import { OperationError } from '../../common/errors';

export class InferenceError extends OperationError {
  override name = 'InferenceError';
}

const logprobsSchema = z.looseObject({
  tokens: z.array(z.string()).optional(),
  token_logprobs: z.array(z.number().nullable()),
  /** The reference server and SGLang give ids; vLLM gives them as tokens "token_id:<n>" when asked. */
  token_ids: z.array(z.int().min(0)).optional(),
});

const completionSchema = z.looseObject({
  choices: z
    .array(
      z.looseObject({
        index: z.int().min(0),
        text: z.string(),
        finish_reason: z.string().nullable().optional(),
        logprobs: logprobsSchema.nullable(),
        /** TOPLOC proofs of the completion's hidden states (the reference server's extension; activities/rl/verify.ts). */
        toploc_proofs: z.array(z.string().min(1).max(4096)).max(100_000).optional(),
      }),
    )
    .min(1),
  usage: z.looseObject({ completion_tokens: z.int().min(0) }).optional(),
});

export interface Completion {
  text: string;
  tokenIds: number[];
  logprobs: number[];
  finishReason: string | null;
  /** Absent when the server makes none (servers without the TOPLOC extension). */
  toplocProofs?: string[];
}

export interface CompletionRequest {
  prompt: string;
  n: number;
  maxTokens: number;
  temperature: number;
  seed: number;
  stop?: string[];
}

async function post(url: string, body: unknown, signal: AbortSignal | undefined, headers: Record<string, string> = {}): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new InferenceError(`${url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`);
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.slice(0, 500);
    try {
      const parsed = z.looseObject({ error: z.looseObject({ message: z.string() }) }).safeParse(JSON.parse(text));
      if (parsed.success) message = parsed.data.error.message;
    } catch {
      // not JSON
    }
    throw new InferenceError(`${url}: HTTP ${res.status}: ${message}`, res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new InferenceError(`${url}: the answer is not JSON`);
  }
}

function tokenIdsOf(lp: z.infer<typeof logprobsSchema>): number[] | undefined {
  if (lp.token_ids) return lp.token_ids;
  if (!lp.tokens) return undefined;
  const ids = lp.tokens.map((t) => (/^token_id:(\d+)$/.exec(t) ? Number(t.slice(9)) : NaN));
  return ids.every(Number.isInteger) ? ids : undefined;
}

/** `n` completions of one prompt with the token ids and logprobs of every sampled token. */
export async function complete(baseUrl: string, req: CompletionRequest, signal?: AbortSignal): Promise<Completion[]> {
  const body = {
    prompt: req.prompt,
    n: req.n,
    max_tokens: req.maxTokens,
    temperature: req.temperature,
    seed: req.seed,
    logprobs: 0,
    return_tokens_as_token_ids: true,
    // TOPLOC proofs for the trainer host's verification (README "Reinforcement learning"); servers without it ignore it.
    toploc: true,
    ...(req.stop?.length ? { stop: req.stop } : {}),
  };
  const parsed = completionSchema.safeParse(await post(`${baseUrl}/v1/completions`, body, signal));
  if (!parsed.success) throw new InferenceError(`${baseUrl}/v1/completions: unexpected answer: ${parsed.error.issues[0]?.message ?? ''}`);
  const choices = [...parsed.data.choices].sort((a, b) => a.index - b.index);
  if (choices.length !== req.n) throw new InferenceError(`${baseUrl}/v1/completions: asked for ${req.n} completions, got ${choices.length}`);
  return choices.map((c) => {
    if (!c.logprobs) throw new InferenceError(`${baseUrl}/v1/completions: no logprobs in the answer (the server must support logprobs)`, true);
    const ids = tokenIdsOf(c.logprobs);
    if (!ids) throw new InferenceError(`${baseUrl}/v1/completions: no token ids in the answer (token_ids, or tokens as "token_id:<n>")`, true);
    const lps = c.logprobs.token_logprobs.map((x) => x ?? 0);
    if (ids.length !== lps.length) throw new InferenceError(`${baseUrl}/v1/completions: ${ids.length} token ids but ${lps.length} logprobs`);
    const proofs = c.toploc_proofs ? { toplocProofs: c.toploc_proofs } : {};
    return { text: c.text, tokenIds: ids, logprobs: lps, finishReason: c.finish_reason ?? null, ...proofs };
  });
}

const loadAnswerSchema = z.looseObject({ success: z.boolean(), message: z.string().optional() });

/** Loads the weights in `modelPath` (a folder with model.safetensors) into the server; `weightVersion` names them. */
export async function loadWeights(baseUrl: string, modelPath: string, weightVersion: string, adminToken?: string): Promise<void> {
  const headers: Record<string, string> = adminToken ? { authorization: `Bearer ${adminToken}` } : {};
  const parsed = loadAnswerSchema.safeParse(await post(`${baseUrl}/update_weights_from_disk`, { model_path: modelPath, weight_version: weightVersion }, undefined, headers));
  if (!parsed.success) throw new InferenceError(`${baseUrl}/update_weights_from_disk: unexpected answer`);
  if (!parsed.data.success) throw new InferenceError(`${baseUrl}/update_weights_from_disk: ${parsed.data.message ?? 'refused'}`, true);
}
