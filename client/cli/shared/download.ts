/** The sha256-metered download of cf-fetch-artifacts (the metering itself: common/metered-download.ts). */
import { writeMetered } from '../../../common/metered-download';
import { CliError, EXIT } from './exit';

/**
 * Streams a response body into `tmpFile` through sha256; returns size and hash. Nothing is left at the final name unless
 * the caller renames the temporary file after checking them.
 */
export async function downloadTo(res: Response, tmpFile: string): Promise<{ size: number; sha256: string }> {
  if (!res.body) throw new CliError(EXIT.UNAVAILABLE, 'the API sent no body');
  try {
    return await writeMetered(res.body, tmpFile, 0o644);
  } catch (err) {
    throw new CliError(EXIT.UNAVAILABLE, `download interrupted: ${(err as Error).message}`);
  }
}
