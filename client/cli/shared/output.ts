/** What the commands print: human text to a terminal, or JSON. */

/** Human text to a terminal, or JSON; errors and progress chatter go to stderr so stdout stays parseable. */
export class Output {
  readonly tty = process.stdout.isTTY === true;
  private openLine = false;
  constructor(readonly json: boolean) {}

  /** One JSON document (or NDJSON line). */
  data(value: unknown): void {
    process.stdout.write(`${JSON.stringify(value)}\n`);
  }

  line(text = ''): void {
    this.endTransient();
    process.stdout.write(`${text}\n`);
  }

  /** A line a terminal may overwrite (the progress bar); a plain line elsewhere. */
  transient(text: string): void {
    if (!this.tty) return this.line(text);
    process.stdout.write(`\r\u001b[2K${text}`);
    this.openLine = true;
  }

  error(message: string): void {
    this.endTransient();
    process.stderr.write(`${message.startsWith('error') ? '' : 'error: '}${message}\n`);
  }

  note(message: string): void {
    this.endTransient();
    process.stderr.write(`${message}\n`);
  }

  private endTransient(): void {
    if (this.openLine) process.stdout.write('\n');
    this.openLine = false;
  }
}
