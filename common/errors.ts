/** An error that says whether trying again can help: `permanent` ones become non-retryable activity failures. */
export class OperationError extends Error {
  constructor(
    message: string,
    /** The other side refused the request itself (bad input, a 4xx): sending it again cannot help. */
    readonly permanent = false,
  ) {
    super(message);
  }
}
