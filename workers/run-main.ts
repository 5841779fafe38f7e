/**
 * A role module's `if (require.main === module)` (and workers/main.ts): runs its main(); an error is printed with the
 * role's name and the process exits 1. Apart from workers/run-role.ts so that the api and setup roles, started through
 * workers/main.ts, do not load the Temporal worker.
 */
export function runMain(role: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    console.error(`[${role}] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
