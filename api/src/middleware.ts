import { randomUUID } from 'node:crypto';
import type { Context, Middleware, ParameterizedContext } from 'koa';
import type { z } from 'zod';
import { channelNameSchema, describeZodError } from '@hearth/protocol';
import {
  AppError,
  ServiceUnavailableError,
  KeyedRateLimiter,
  type Logger,
} from '@hearth/server-common';
import type { Authenticator, Principal } from './auth';
import type { ClientAddress } from './client-address';

/** Request state every handler can rely on. */
export interface ApiState {
  /** Request id, echoed in the `x-request-id` response header. */
  requestId: string;
  /** Logger carrying the request id. */
  logger: Logger;
  /** Parsed, validated request body (set by `validateBody`). */
  body: unknown;
  /** The authenticated caller (set by `authenticate`). */
  principal?: Principal;
  /** Where the request came from, trusted proxies seen through (set by `clientAddress`). */
  client: ClientAddress;
}

/** Koa context of an api request. */
export type ApiContext = Context & { state: ApiState };

const MAX_JSON_BODY_BYTES = 64 * 1024;

/** Gives each request an id and a child logger, and logs it once it is answered. */
export function requestContext(logger: Logger): Middleware {
  return async (ctx, next) => {
    const started = performance.now();
    const header = ctx.get('x-request-id');
    const requestId = /^[\w-]{1,64}$/.test(header) ? header : randomUUID();
    ctx.state.requestId = requestId;
    ctx.state.logger = logger.child({ requestId });
    ctx.set('x-request-id', requestId);
    await next();
    if (ctx.path.startsWith('/api/')) {
      ctx.state.logger.info(
        {
          method: ctx.method,
          path: ctx.path,
          status: ctx.status,
          ms: Math.round((performance.now() - started) * 10) / 10,
        },
        'request',
      );
    }
  };
}

/**
 * Turns errors into `{"error":{"code","message"}}`. AppErrors keep their code and message; a
 * `ServiceUnavailableError` (the database down or hung) becomes 503 `unavailable` and is logged
 * with its cause; anything else becomes a generic 500 and is logged, without sending a stack to
 * the client.
 */
export function errorHandler(): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      if (error instanceof ServiceUnavailableError) {
        // The client learns only which service failed; the operator needs the driver's reason.
        (ctx.state.logger as Logger).warn(
          { err: error.cause, service: error.service },
          'request failed: service unavailable',
        );
      }
      if (error instanceof AppError) {
        ctx.status = error.status;
        ctx.body = { error: { code: error.code, message: error.message } };
        return;
      }
      (ctx.state.logger as Logger).error({ err: error }, 'unhandled request error');
      ctx.status = 500;
      ctx.body = { error: { code: 'internal', message: 'internal server error' } };
    }
  };
}

/**
 * Refuses client addresses that exceed `ratePerSecond` requests per second (burst of twice that);
 * runs after `clientAddress`.
 */
export function rateLimit(ratePerSecond: number): Middleware {
  const limiter = new KeyedRateLimiter({ ratePerSecond, burst: ratePerSecond * 2 });
  return async (ctx, next) => {
    const { address } = (ctx as ApiContext).state.client;
    if (!limiter.take(address)) throw new AppError('rate_limited', 'too many requests; slow down');
    await next();
  };
}

/** Reads a JSON body (64 KiB at most), checks it against a schema, and stores it typed. */
export function validateBody(schema: z.ZodType): Middleware {
  return async (ctx, next) => {
    if (!ctx.is('application/json')) {
      throw new AppError('bad_request', 'the body must be JSON (Content-Type: application/json)');
    }
    const text = await readBody(ctx);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new AppError('bad_request', 'the body is not valid JSON');
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new AppError('bad_request', `invalid body: ${describeZodError(parsed.error)}`);
    }
    ctx.state.body = parsed.data;
    await next();
  };
}

/**
 * `validateBody` for a route whose body may be left out: a request without one (no
 * Content-Length, or 0, and not chunked) goes on with `ctx.state.body` undefined.
 */
export function validateOptionalBody(schema: z.ZodType): Middleware {
  const validate = validateBody(schema);
  return async (ctx, next) => {
    if (!ctx.request.length && !ctx.get('transfer-encoding')) {
      ctx.state.body = undefined;
      await next();
      return;
    }
    await validate(ctx, next);
  };
}

async function readBody(ctx: ParameterizedContext): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > MAX_JSON_BODY_BYTES) throw new AppError('bad_request', 'the body is too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Resolves the caller from the Authorization header into `ctx.state.principal`; 401 without. */
export function authenticate(authenticator: Authenticator): Middleware {
  return async (ctx, next) => {
    ctx.state.principal = await authenticator.authenticate({
      authorization: ctx.get('authorization') || undefined,
    });
    await next();
  };
}

/** The caller `authenticate` resolved; 401 when the route did not authenticate it. */
export function callerOf(ctx: { state: ApiState }): Principal {
  const principal = ctx.state.principal;
  if (!principal) throw new AppError('unauthorized', 'credentials required');
  return principal;
}

/** Checks a route's `:name` parameter as a channel name; 400 otherwise. */
export function channelParam(): Middleware {
  return async (ctx, next) => {
    const parsed = channelNameSchema.safeParse(
      (ctx as unknown as { params: { name?: string } }).params.name,
    );
    if (!parsed.success) {
      throw new AppError('bad_request', `invalid channel name: ${describeZodError(parsed.error)}`);
    }
    await next();
  };
}
