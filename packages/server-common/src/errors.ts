import type { ErrorCode } from '@hearth/protocol';

const statusByCode: Record<ErrorCode, number> = {
  bad_request: 400,
  unknown_method: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  not_joined: 409,
  already_joined: 409,
  server_muted: 403,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

/** An error meant for the client: its code and message are safe to send as they are. */
export class AppError extends Error {
  /** Machine-readable code sent to the client. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'AppError';
    this.code = code;
  }

  /** HTTP status that goes with the code. */
  get status(): number {
    return statusByCode[this.code];
  }
}

/**
 * A backing service (the database, the node registry) could not be reached or did not answer in
 * time. Clients get 503 with `"<service> unavailable"`; the cause stays in the logs.
 */
export class ServiceUnavailableError extends AppError {
  /** Which service failed, as named to the client: `database`, `node registry`. */
  readonly service: string;

  constructor(service: string, options: { cause?: unknown } = {}) {
    super('unavailable', `${service} unavailable`);
    this.name = 'ServiceUnavailableError';
    this.service = service;
    if (options.cause !== undefined) this.cause = options.cause;
  }
}
