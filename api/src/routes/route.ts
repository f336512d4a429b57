import type { z } from 'zod';
import type { Grant } from '@hearth/protocol';
import type { KeyedRateLimiter } from '@hearth/server-common';
import type { AppDeps } from '../app';
import type { Principal } from '../auth';
import type { ChannelAccess } from '../channel-access';
import type { ApiContext } from '../middleware';
import type { ChannelRecordCache } from './channel-records';

/** Which per-address rate limit a route counts against. */
export type RouteLimit = 'rest' | 'auth' | 'join' | 'none';

/**
 * Who may call a route. The grant must hold in the `:name` channel when the path has one, and
 * server-wide otherwise or with `serverWide`. `accountsOnly` refuses guest sessions.
 */
export interface RouteAuth {
  readonly grant?: Grant;
  readonly serverWide?: true;
  readonly accountsOnly?: true;
}

/** What every handler gets besides its request: the app's parts and the per-app caches. */
export interface RouteDeps extends AppDeps {
  /** Who may see private channels. */
  readonly access: ChannelAccess;
  /** Channel records recently read, for joins. */
  readonly channelRecords: ChannelRecordCache;
  /** Channels each identity may still create this hour. */
  readonly channelCreations: KeyedRateLimiter;
}

/** One request as a handler sees it, its body and query already parsed by the route's schemas. */
export interface RouteRequest<Body, Query = undefined> {
  /** The Koa context, for cookies, headers and the rare status a route sets itself. */
  readonly ctx: ApiContext;
  /** The app's parts. */
  readonly deps: RouteDeps;
  /** Path parameters, as given (a `:name` channel parameter is checked before the handler). */
  readonly params: Readonly<Record<string, string>>;
  /** The parsed body: undefined for a route without one, or an optional one left out. */
  readonly body: Body;
  /** The parsed query string: undefined for a route without a query schema. */
  readonly query: Query;
  /** The authenticated caller; throws `unauthorized` on a public route. */
  readonly caller: Principal;
}

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;
type Answer<S> = S extends z.ZodType ? z.input<S> : void;

/**
 * One REST route: its method and path, what the docs say of it, who may call it, its body and
 * answer schemas, and its handler. The Koa router and the OpenAPI document are both generated from
 * the table of these, so they cannot drift apart.
 */
export interface RouteSpec<
  B extends z.ZodType | undefined,
  A extends z.ZodType | undefined,
  Q extends z.ZodObject | undefined = undefined,
> {
  /** HTTP method. */
  readonly method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Path in Koa form, e.g. `/api/channels/:name`. */
  readonly path: string;
  /** One line saying what it does. */
  readonly summary: string;
  /** Its rate limit: `rest` unless said otherwise. */
  readonly limit?: RouteLimit;
  /** Present on every route that needs a caller. */
  readonly auth?: RouteAuth;
  /** The JSON body and its schema. */
  readonly body?: B;
  /** Whether the body may be left out. */
  readonly bodyOptional?: true;
  /** The query string's parameters and their schema. */
  readonly query?: Q;
  /** Error statuses particular to this route, with what they mean. */
  readonly errors?: Readonly<Record<number, string>>;
  /** Success status and its JSON schema (none for 204), or a text answer. */
  readonly success: { readonly status: number; readonly schema?: A; readonly text?: true };
  /** Answers the request: what it returns is the body, sent with the success status. */
  handle(request: RouteRequest<Parsed<B>, Parsed<Q>>): Answer<A> | Promise<Answer<A>>;
}

/** A route of the table, whatever its schemas. */
export type Route = RouteSpec<
  z.ZodType | undefined,
  z.ZodType | undefined,
  z.ZodObject | undefined
>;

/** Declares a route; the handler's body, query and answer are typed by the route's schemas. */
export function route<
  B extends z.ZodType | undefined = undefined,
  A extends z.ZodType | undefined = undefined,
  Q extends z.ZodObject | undefined = undefined,
>(spec: RouteSpec<B, A, Q>): Route {
  return spec as unknown as Route;
}
