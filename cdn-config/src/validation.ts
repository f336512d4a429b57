import { z } from 'zod';

/** Value of Access-Control-Allow-Origin: `*` or one `scheme://host[:port]` origin. */
export const corsOriginSchema = z
  .string()
  .regex(
    /^(?:\*|https?:\/\/[A-Za-z0-9.-]+(?::[0-9]{1,5})?)$/,
    'must be * or a scheme://host[:port] origin',
  );

/** Parses `value` with `schema`, or throws a TypeError that lists every problem. */
export function parseOrThrow<T extends z.ZodType>(
  schema: T,
  value: unknown,
  what: string,
): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw new TypeError(`Invalid ${what}:\n${z.prettifyError(result.error)}`);
  return result.data;
}
