import { isImmutable, type CacheRule } from './cache-rules';
import {
  NGINX_CACHE_ZONE,
  S3_UPSTREAM,
  originParts,
  type ParsedEdgeOptions,
} from './nginx-edge-options';
import { blank, block, comment, directive, quote, type NginxNode } from './nginx-syntax';

/** The location regex of a rule's suffix: the suffix, escaped, at the end of the path. */
export function regexForSuffix(suffix: string): string {
  return `${suffix.replace(/[.\\^$|?*+()[\]{}]/g, '\\$&')}$`;
}

type RuleKind = 'uncached' | 'immutable' | 'short-lived';

function ruleKind(rule: CacheRule): RuleKind {
  if (rule.edgeTtlSeconds === 0) return 'uncached';
  return isImmutable(rule) ? 'immutable' : 'short-lived';
}

// Why each kind of rule is cached the way it is; written once above the locations that use it.
const KIND_NOTES: Record<RuleKind, string> = {
  uncached:
    'TTL 0: every request goes to the origin and nothing is stored. The cache stays configured ' +
    '(bypassed) so that X-Cache-Status still reports BYPASS.',
  immutable:
    'Immutable objects: a stored copy stays correct however old it is, so it is served when the ' +
    'origin is down or failing; "updating" lets one request refresh it while others get the copy.',
  'short-lived':
    'Short TTLs (live playlists): nginx stores expiry in whole seconds and keeps an object fresh ' +
    "through the TTL's last second, so a TTL of N s lasts between N and N+1 s. proxy_cache_lock " +
    'only guards objects not cached yet; once one expires, "updating" is what keeps a crowd to ' +
    'one origin refresh. A stale copy is not served on origin errors: an old live playlist would ' +
    'leave players stalled with nothing to act on, while an error makes them retry.',
};

/**
 * The request headers every origin gets empty: Connection (for the keepalive pool), and the
 * viewer's Authorization, Cookie, Origin and Accept-Encoding.
 */
export function clearedOriginRequestHeaders(): NginxNode[] {
  return ['Connection', 'Authorization', 'Cookie', 'Origin', 'Accept-Encoding'].map((name) =>
    directive('proxy_set_header', name, quote('')),
  );
}

/** The caching directives of a rule: bypassed, immutable, or short-lived. */
export function cachingDirectives(rule: CacheRule): NginxNode[] {
  const cache = directive('proxy_cache', NGINX_CACHE_ZONE);
  switch (ruleKind(rule)) {
    case 'uncached':
      return [cache, directive('proxy_cache_bypass', '1'), directive('proxy_no_cache', '1')];
    case 'immutable':
      return [
        cache,
        directive('proxy_cache_valid', '200', `${rule.edgeTtlSeconds}s`),
        directive(
          'proxy_cache_use_stale',
          'error',
          'timeout',
          'invalid_header',
          'updating',
          'http_500',
          'http_502',
          'http_503',
          'http_504',
        ),
      ];
    case 'short-lived':
      return [
        cache,
        directive('proxy_cache_valid', '200', `${rule.edgeTtlSeconds}s`),
        directive('proxy_cache_use_stale', 'updating'),
      ];
  }
}

/** One location per cache rule, fetching from S3, with a note above each kind of caching. */
export function ruleLocations(
  rules: readonly CacheRule[],
  options: ParsedEdgeOptions,
): NginxNode[] {
  const kinds = [...new Set(rules.map(ruleKind))];
  return [
    comment(
      'One location per cache rule. Regex locations are tried in the order written and the ' +
        'first match wins, the same rule as cacheRuleFor(). Each maps /<key> to ' +
        '/<bucket>/<key> (path-style S3); the trailing "?" of the rewrite drops the query ' +
        'string, so viewers cannot send S3 sub-resource requests such as ?acl or ?versions.',
    ),
    ...kinds.flatMap((kind) => [blank, comment(KIND_NOTES[kind])]),
    blank,
    ...rules.flatMap((rule) => [
      comment(
        `${rule.name}: *${rule.suffix}, edge TTL ${rule.edgeTtlSeconds} s ` +
          `(${rule.contentType}; ${rule.cacheControl}).`,
      ),
      block('location', ['~', regexForSuffix(rule.suffix)], originFetch(rule, options)),
      blank,
    ]),
  ];
}

/** What a rule's location does: map the path to its key in the bucket, fetch it, cache it. */
export function originFetch(rule: CacheRule, options: ParsedEdgeOptions): NginxNode[] {
  const scheme = originParts(options.originUrl).scheme;
  return [
    directive('rewrite', '^', `/${options.bucket}$uri?`, 'break'),
    directive('proxy_pass', `${scheme}://${S3_UPSTREAM}`),
    ...cachingDirectives(rule),
  ];
}
