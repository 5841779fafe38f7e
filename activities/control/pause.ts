import type { Context } from '@temporalio/activity';

/** setTimeout's own limit: a longer delay would fire at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * Waits `ms`, or less when one of `wakers` settles first; rejects when the activity is cancelled. Its timer goes when
 * it returns: Context.sleep's, raced against a waker, would stay until it fires and keep a stopping worker's process
 * alive that long (up to admission_poll_seconds after SIGTERM).
 */
export async function pause(ctx: Context, ms: number, ...wakers: Promise<unknown>[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(ms, MAX_DELAY_MS)))), ctx.cancelled, ...wakers]);
  } finally {
    clearTimeout(timer);
  }
}
