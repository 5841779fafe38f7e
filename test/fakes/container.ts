/**
 * A stand-in for a remote container (an Akash lease's service, a Prime Intellect pod): the container's real
 * command and env run on this host, in a process group of their own, with the agent's HTTP port on 127.0.0.1
 * (what the provider maps to a public URI). The image's programs come from a bin folder put first on PATH, so
 * `forge-trainer run` inside the container is whatever the test's image stands for (the fake trainer).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/ports';

/** test/fixtures/fake-trainer.sh (also in helpers/forge.ts, which pulls in the whole worker). */
export const FAKE_TRAINER_SH = path.resolve(__dirname, '..', 'fixtures', 'fake-trainer.sh');

export interface Image {
  /** Programs of the image by name: `forge-trainer` → the argv it runs (its own arguments are dropped). */
  programs: Record<string, string[]>;
}

export class FakeContainer {
  readonly lines: string[] = [];
  readonly port: number;
  private child: ChildProcess | undefined;
  private exited = false;

  private constructor(port: number) {
    this.port = port;
  }

  /** `bind`: the address the agent listens on (default 127.0.0.1). */
  static async start(argv: string[], env: Record<string, string>, image: Image, bind = '127.0.0.1'): Promise<FakeContainer> {
    const c = new FakeContainer(await freePort());
    const root = mkdtempSync(path.join(os.tmpdir(), 'fake-container-'));
    const bin = path.join(root, 'bin');
    mkdirSync(bin);
    for (const [name, program] of Object.entries(image.programs)) {
      const file = path.join(bin, name);
      writeFileSync(file, `#!/bin/sh\nexec ${program.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')}\n`);
      chmodSync(file, 0o755);
    }
    const [cmd = 'sh', ...args] = argv;
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        HOME: root,
        ...env,
        FORGE_AGENT_PORT: String(c.port),
        FORGE_AGENT_DIR: path.join(root, 'agent'),
        FORGE_AGENT_BIND: bind,
      },
    });
    c.child = child;
    const collect = (stream: NodeJS.ReadableStream | null): void => {
      let rest = '';
      stream?.on('data', (chunk: Buffer) => {
        const parts = (rest + chunk.toString('utf8')).split('\n');
        rest = parts.pop() ?? '';
        c.lines.push(...parts);
      });
    };
    collect(child.stdout);
    collect(child.stderr);
    child.on('exit', () => {
      c.exited = true;
    });
    return c;
  }

  get running(): boolean {
    return !this.exited;
  }

  /** The whole process group, at once (a machine that goes away). */
  kill(): void {
    if (this.child?.pid && !this.exited) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
