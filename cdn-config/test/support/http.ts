import http from 'node:http';

/** A response read in full. */
export interface HttpResponse {
  /** Status code. */
  readonly status: number;
  /** Response headers, names in lowercase. */
  readonly headers: http.IncomingHttpHeaders;
  /** The whole body. */
  readonly body: Buffer;
}

const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Sends one request on a fresh connection and reads the whole response. node:http is used
 * instead of fetch so that headers such as Cookie and Origin go out exactly as given, and no
 * pooled connection outlives the test.
 */
export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () =>
      req.destroy(new Error(`${url}: no response in ${REQUEST_TIMEOUT_MS} ms`)),
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
