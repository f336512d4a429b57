import { z } from 'zod';

/** Machine-readable error codes shared by REST responses and signaling error responses. */
export const errorCodeSchema = z.enum([
  'bad_request',
  'unknown_method',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'not_joined',
  'already_joined',
  'server_muted',
  'rate_limited',
  'unavailable',
  'internal',
]);

/** One of the machine-readable error codes. */
export type ErrorCode = z.infer<typeof errorCodeSchema>;

/** The error object carried by REST error bodies and failed signaling responses. */
export const errorInfoSchema = z.object({
  code: errorCodeSchema,
  message: z.string(),
});

/** The error object carried by REST error bodies and failed signaling responses. */
export type ErrorInfo = z.infer<typeof errorInfoSchema>;

/** The JSON body of every REST error response: `{"error":{"code","message"}}`. */
export const errorBodySchema = z.object({ error: errorInfoSchema });

/** The JSON body of every REST error response. */
export type ErrorBody = z.infer<typeof errorBodySchema>;

/** Turns a zod error into one readable line naming each failing path. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}
