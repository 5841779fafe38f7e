import { spawn } from 'node:child_process';

export const baselineActivities = {
  /** Spawns the process and resolves with its exit code. */
  runProcess(argv: string[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', (code) => resolve(code ?? -1));
    });
  },
};
export type BaselineActivities = typeof baselineActivities;
