/** FORGE_LOCAL_RL: whether `npm start` runs the RL roles on this machine (workers/local-rl.ts); on unless "0", "false", "off" or "no". */
export function localRlEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.FORGE_LOCAL_RL ?? '').trim().toLowerCase();
  return !['0', 'false', 'off', 'no'].includes(v);
}
