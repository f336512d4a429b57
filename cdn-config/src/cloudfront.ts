import { z } from 'zod';
import {
  cacheRuleNamed,
  cacheRules,
  cacheRuleTableSchema,
  isCompressible,
  type CacheRule,
} from './cache-rules';
import { PRIVATE_KEY_PREFIX } from './private-playback';
import { s3ResponseHeaders } from './s3-headers';
import { corsOriginSchema, parseOrThrow } from './validation';

/** A CloudFormation string: a literal or an intrinsic function resolving to one. */
export type CfnString = string | { readonly Ref: string } | { readonly 'Fn::Sub': string };

/** Methods every behavior allows and caches; OPTIONS so that CORS preflights are answered. */
export type CloudFrontMethod = 'GET' | 'HEAD' | 'OPTIONS';

/** The legacy cache-key settings of a behavior (required with MinTTL/DefaultTTL/MaxTTL). */
export interface CloudFrontForwardedValues {
  /** Query strings are neither forwarded nor part of the cache key. */
  readonly QueryString: boolean;
  /** Cookies are neither forwarded nor part of the cache key. */
  readonly Cookies: { readonly Forward: 'none' };
  /** Request headers forwarded to the origin and made part of the cache key. */
  readonly Headers: readonly string[];
  /** With `QueryString`, the only query parameters in the cache key (and forwarded). */
  readonly QueryStringCacheKeys?: readonly string[];
}

/** `DefaultCacheBehavior` of a CloudFormation `DistributionConfig`. */
export interface CloudFrontDefaultCacheBehavior {
  /** Origin the behavior sends requests to. */
  readonly TargetOriginId: string;
  /** What happens to plain-HTTP viewers. */
  readonly ViewerProtocolPolicy: 'redirect-to-https';
  /** Methods CloudFront accepts. */
  readonly AllowedMethods: readonly CloudFrontMethod[];
  /** Methods whose responses CloudFront caches. */
  readonly CachedMethods: readonly CloudFrontMethod[];
  /** Whether CloudFront gzip/brotli-compresses responses. */
  readonly Compress: boolean;
  /** Shortest time an object stays cached, in seconds, whatever the origin says. */
  readonly MinTTL: number;
  /** Time an object stays cached when the origin sends no max-age, in seconds. */
  readonly DefaultTTL: number;
  /** Longest time an object stays cached, in seconds, whatever the origin says. */
  readonly MaxTTL: number;
  /** Cache key and forwarding settings. */
  readonly ForwardedValues: CloudFrontForwardedValues;
  /** Response headers policy adding CORS headers and removing S3's. */
  readonly ResponseHeadersPolicyId: CfnString;
}

/** One entry of `CacheBehaviors`: a default behavior for the paths matching `PathPattern`. */
export interface CloudFrontCacheBehavior extends CloudFrontDefaultCacheBehavior {
  /** Viewer paths the behavior applies to; behaviors are tried in order. */
  readonly PathPattern: string;
  /** Key groups whose keys sign the URLs or cookies a viewer needs; set on private paths only. */
  readonly TrustedKeyGroups?: { readonly Enabled: true; readonly Items: readonly CfnString[] };
}

/** One S3 origin of a distribution. */
export interface CloudFrontS3Origin {
  /** Name the behaviors refer to. */
  readonly Id: string;
  /** Bucket endpoint, e.g. `my-bucket.s3.eu-west-1.amazonaws.com`. */
  readonly DomainName: string;
  /** Empty identity: access is granted by an origin access control, or the bucket is public. */
  readonly S3OriginConfig: { readonly OriginAccessIdentity: '' };
  /** Origin access control that signs CloudFront's requests to the bucket. */
  readonly OriginAccessControlId?: string;
  /** Extra caching layer in one region in front of the origin. */
  readonly OriginShield?: { readonly Enabled: true; readonly OriginShieldRegion: string };
}

/** The LL-HLS origin of a distribution: a custom HTTPS origin in front of the ingest nodes. */
export interface CloudFrontCustomOrigin {
  /** Name the behaviors refer to. */
  readonly Id: string;
  /** Host name of the live origin (no scheme). */
  readonly DomainName: string;
  /** HTTPS only, and time enough for a blocking playlist request. */
  readonly CustomOriginConfig: {
    readonly HTTPSPort: 443;
    readonly OriginProtocolPolicy: 'https-only';
    readonly OriginSSLProtocols: readonly ['TLSv1.2'];
    readonly OriginReadTimeout: number;
    readonly OriginKeepaliveTimeout: number;
  };
}

/** The `DistributionConfig` of an `AWS::CloudFront::Distribution` (the parts generated here). */
export interface CloudFrontDistributionConfig {
  /** Whether the distribution serves requests. */
  readonly Enabled: true;
  /** Free-text description. */
  readonly Comment: string;
  /** HTTP versions offered to viewers. */
  readonly HttpVersion: 'http2and3';
  /** Whether viewers may connect over IPv6. */
  readonly IPV6Enabled: true;
  /** Which edge locations serve the distribution. */
  readonly PriceClass: string;
  /** The bucket, and the live origin when there is one. */
  readonly Origins: readonly (CloudFrontS3Origin | CloudFrontCustomOrigin)[];
  /** Behavior for paths no cache rule matches. */
  readonly DefaultCacheBehavior: CloudFrontDefaultCacheBehavior;
  /** Per cache rule one signed behavior for private channels, then one public behavior. */
  readonly CacheBehaviors: readonly CloudFrontCacheBehavior[];
}

/** The `ResponseHeadersPolicyConfig` of an `AWS::CloudFront::ResponseHeadersPolicy`. */
export interface CloudFrontResponseHeadersPolicyConfig {
  /** Policy name, unique in the account. */
  readonly Name: CfnString;
  /** Free-text description. */
  readonly Comment: string;
  /** CORS headers CloudFront sets on every response of the behaviors using the policy. */
  readonly CorsConfig: {
    readonly AccessControlAllowCredentials: false;
    readonly AccessControlAllowHeaders: { readonly Items: readonly string[] };
    readonly AccessControlAllowMethods: { readonly Items: readonly CloudFrontMethod[] };
    readonly AccessControlAllowOrigins: { readonly Items: readonly string[] };
    readonly AccessControlExposeHeaders: { readonly Items: readonly string[] };
    readonly AccessControlMaxAgeSec: number;
    readonly OriginOverride: true;
  };
  /** Origin headers CloudFront removes before answering viewers. */
  readonly RemoveHeadersConfig: { readonly Items: readonly { readonly Header: string }[] };
}

/** Logical id of the response headers policy in the generated template. */
export const CLOUDFRONT_POLICY_LOGICAL_ID = 'HlsCorsResponseHeadersPolicy';
/** Logical id of the distribution in the generated template. */
export const CLOUDFRONT_DISTRIBUTION_LOGICAL_ID = 'HlsDistribution';
/** Logical id of the key group that signs private playback, when the template creates it. */
export const CLOUDFRONT_KEY_GROUP_LOGICAL_ID = 'PrivatePlaybackKeyGroup';
/** Logical id of the public key in that key group. */
export const CLOUDFRONT_PUBLIC_KEY_LOGICAL_ID = 'PrivatePlaybackPublicKey';
/** Template parameter holding the PEM public key whose private key signs private playback. */
export const CLOUDFRONT_PUBLIC_KEY_PARAMETER = 'PrivatePlaybackPublicKeyPem';
/** Id of the single origin that every behavior targets. */
export const CLOUDFRONT_ORIGIN_ID = 'hls-s3-origin';
/** Id of the LL-HLS origin that the live behaviors target. */
export const CLOUDFRONT_LIVE_ORIGIN_ID = 'hls-live-origin';
// Blocking playlist requests wait up to three target durations (6 s) at the origin.
const LIVE_ORIGIN_READ_TIMEOUT_SECONDS = 30;
// The blocking-reload parameters: the only query in a live playlist's cache key.
const BLOCKING_RELOAD_PARAMETERS = ['_HLS_msn', '_HLS_part'];
// A response headers policy may remove at most 10 headers (a CloudFront quota), so the first
// 10 of the list, which is ordered by how often S3 sends them, are removed.
const REMOVE_HEADERS_LIMIT = 10;
const METHODS: readonly CloudFrontMethod[] = ['GET', 'HEAD', 'OPTIONS'];
// S3 answers a CORS preflight only when it sees these headers, and an OPTIONS response must be
// cached per preflight. With the legacy settings a forwarded header is also a cache-key part, so
// the cache splits by the viewer's Origin: one entry per site embedding the player.
const FORWARDED_HEADERS = [
  'Origin',
  'Access-Control-Request-Method',
  'Access-Control-Request-Headers',
];
const PREFLIGHT_ALLOW_HEADERS = ['Range', 'If-Range', 'If-None-Match', 'If-Modified-Since'];
const PREFLIGHT_MAX_AGE_SECONDS = 86_400;

/** Options of the CloudFront renderers; `CloudFrontOptions` is what callers pass. */
export const cloudFrontOptionsSchema = z.strictObject({
  /** S3 bucket endpoint, e.g. `hearth-live.s3.eu-west-1.amazonaws.com` (no scheme). */
  originDomainName: z
    .string()
    .regex(/^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/, 'must be a bare domain name, no scheme or path'),
  /** Origin access control id; without it the bucket must allow public reads. */
  originAccessControlId: z
    .string()
    .regex(/^[A-Z0-9]+$/, 'must be an origin access control id')
    .optional(),
  /** Region of an Origin Shield layer, which folds every edge's misses into one request. */
  originShieldRegion: z
    .string()
    .regex(/^[a-z]{2}(?:-[a-z]+)+-[0-9]$/, 'must be an AWS region such as eu-west-1')
    .optional(),
  /** Value of Access-Control-Allow-Origin: `*` or one origin. */
  corsAllowedOrigin: corsOriginSchema.default('*'),
  /** Edge locations used; PriceClass_All reaches every viewer region. */
  priceClass: z
    .enum(['PriceClass_100', 'PriceClass_200', 'PriceClass_All'])
    .default('PriceClass_All'),
  /** Distribution description. */
  comment: z.string().max(128).default('Hearth live HLS'),
  /** Existing response headers policy id; by default the template's own policy is referenced. */
  responseHeadersPolicyId: z.string().min(1).optional(),
  /**
   * Host name of the LL-HLS origin: a tier of nginx edges (cdn-config's, with
   * `liveOriginResolver`) in front of the ingest nodes, which itself reads S3 for streams no node
   * serves. Live playlists and media under `live/` go there; without it, everything is S3's.
   */
  liveOriginDomainName: z
    .string()
    .regex(/^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/, 'must be a bare domain name, no scheme or path')
    .optional(),
  /**
   * Existing key group whose keys sign private channels' URLs or cookies; by default the
   * template creates one from the public key given as a template parameter.
   */
  privatePlaybackKeyGroupId: z
    .string()
    .regex(/^[a-z0-9-]+$/, 'must be a CloudFront key group id')
    .optional(),
});

/** Options accepted by the CloudFront renderers (defaults applied by the schema). */
export type CloudFrontOptions = z.input<typeof cloudFrontOptionsSchema>;

function behaviorFor(
  ttl: number,
  compress: boolean,
  policyId: CfnString,
  live = false,
): CloudFrontDefaultCacheBehavior {
  return {
    TargetOriginId: live ? CLOUDFRONT_LIVE_ORIGIN_ID : CLOUDFRONT_ORIGIN_ID,
    ViewerProtocolPolicy: 'redirect-to-https',
    AllowedMethods: METHODS,
    CachedMethods: METHODS,
    Compress: compress,
    // All three TTLs equal the rule's, so the table decides and headers stored with an object
    // cannot stretch or shorten its time at the edge; the nginx edge ignores them the same way.
    MinTTL: ttl,
    DefaultTTL: ttl,
    MaxTTL: ttl,
    // A live playlist is keyed (and forwarded) with its blocking-reload query, nothing else.
    ForwardedValues: live
      ? {
          QueryString: true,
          QueryStringCacheKeys: BLOCKING_RELOAD_PARAMETERS,
          Cookies: { Forward: 'none' },
          Headers: FORWARDED_HEADERS,
        }
      : { QueryString: false, Cookies: { Forward: 'none' }, Headers: FORWARDED_HEADERS },
    ResponseHeadersPolicyId: policyId,
  };
}

// Live playlists and media of public channels go to the LL-HLS origin first: CloudFront holds a
// crowd's blocking requests behind one (its request collapsing), as the nginx edge's cache lock
// does. Private channels stay on S3 with their signed behaviors.
function liveBehaviors(
  rules: readonly CacheRule[],
  policyId: CfnString,
): CloudFrontCacheBehavior[] {
  const playlist = cacheRuleNamed(rules, 'media-playlist');
  return [
    {
      PathPattern: 'live/*.m3u8',
      ...behaviorFor(playlist.edgeTtlSeconds, isCompressible(playlist), policyId, true),
    },
    ...['fmp4-segment', 'fmp4-init'].map((name) => {
      const rule = cacheRuleNamed(rules, name);
      return {
        PathPattern: `live/*${rule.suffix}`,
        ...behaviorFor(rule.edgeTtlSeconds, false, policyId, true),
      };
    }),
  ];
}

// CloudFront, like the table, uses the first matching pattern, so behaviors keep table order.
// Private channels' objects (`private/<channel>/...`) get the same behaviors, placed first and
// restricted to trusted key groups: CloudFront answers 403 to a viewer without a valid signed
// URL or signed cookies. HLS players resolve segment URLs relative to their playlist and drop
// its query string, so signed cookies (CloudFront-Policy with a `private/<channel>/*` resource)
// are what lets one signature cover a channel. A last `private/*` behavior keeps any other
// private key from falling through to the unsigned default behavior.
/** Renders a CloudFront `DistributionConfig`: per cache rule a signed then a public behavior. */
export function renderCloudFrontDistribution(
  options: CloudFrontOptions,
  rules: readonly CacheRule[] = cacheRules,
): CloudFrontDistributionConfig {
  const parsed = parseOrThrow(cloudFrontOptionsSchema, options, 'CloudFront options');
  const table = parseOrThrow(cacheRuleTableSchema, rules, 'cache rule table');
  const policyId: CfnString = parsed.responseHeadersPolicyId ?? {
    Ref: CLOUDFRONT_POLICY_LOGICAL_ID,
  };
  const trustedKeyGroups = {
    Enabled: true,
    Items: [parsed.privatePlaybackKeyGroupId ?? { Ref: CLOUDFRONT_KEY_GROUP_LOGICAL_ID }],
  } as const;
  return {
    Enabled: true,
    Comment: parsed.comment,
    HttpVersion: 'http2and3',
    IPV6Enabled: true,
    PriceClass: parsed.priceClass,
    Origins: [
      {
        Id: CLOUDFRONT_ORIGIN_ID,
        DomainName: parsed.originDomainName,
        S3OriginConfig: { OriginAccessIdentity: '' },
        ...(parsed.originAccessControlId
          ? { OriginAccessControlId: parsed.originAccessControlId }
          : {}),
        ...(parsed.originShieldRegion
          ? { OriginShield: { Enabled: true, OriginShieldRegion: parsed.originShieldRegion } }
          : {}),
      },
      ...(parsed.liveOriginDomainName
        ? [
            {
              Id: CLOUDFRONT_LIVE_ORIGIN_ID,
              DomainName: parsed.liveOriginDomainName,
              CustomOriginConfig: {
                HTTPSPort: 443,
                OriginProtocolPolicy: 'https-only',
                OriginSSLProtocols: ['TLSv1.2'],
                OriginReadTimeout: LIVE_ORIGIN_READ_TIMEOUT_SECONDS,
                OriginKeepaliveTimeout: 60,
              },
            } as const,
          ]
        : []),
    ],
    // A path no rule covers is not an HLS object: it is passed through uncached, and with an
    // origin access control limited to s3:GetObject the bucket cannot be listed through it.
    DefaultCacheBehavior: behaviorFor(0, false, policyId),
    CacheBehaviors: [
      ...(parsed.liveOriginDomainName ? liveBehaviors(table, policyId) : []),
      ...table.map((rule) => ({
        PathPattern: `${PRIVATE_KEY_PREFIX}/*${rule.suffix}`,
        ...behaviorFor(rule.edgeTtlSeconds, isCompressible(rule), policyId),
        TrustedKeyGroups: trustedKeyGroups,
      })),
      {
        PathPattern: `${PRIVATE_KEY_PREFIX}/*`,
        ...behaviorFor(0, false, policyId),
        TrustedKeyGroups: trustedKeyGroups,
      },
      ...table.map((rule) => ({
        PathPattern: `*${rule.suffix}`,
        ...behaviorFor(rule.edgeTtlSeconds, isCompressible(rule), policyId),
      })),
    ],
  };
}

/** Renders the response headers policy: CORS for players on other sites, S3 headers removed. */
export function renderCloudFrontResponseHeadersPolicy(
  options: CloudFrontOptions,
): CloudFrontResponseHeadersPolicyConfig {
  const parsed = parseOrThrow(cloudFrontOptionsSchema, options, 'CloudFront options');
  return {
    // Policy names are unique per account, so the stack name keeps two stacks apart.
    Name: { 'Fn::Sub': '${AWS::StackName}-hls-cors' },
    Comment: 'CORS for HLS players; hides S3 response headers',
    CorsConfig: {
      AccessControlAllowCredentials: false,
      AccessControlAllowHeaders: { Items: PREFLIGHT_ALLOW_HEADERS },
      AccessControlAllowMethods: { Items: METHODS },
      AccessControlAllowOrigins: { Items: [parsed.corsAllowedOrigin] },
      AccessControlExposeHeaders: { Items: ['Content-Length', 'Content-Range'] },
      AccessControlMaxAgeSec: PREFLIGHT_MAX_AGE_SECONDS,
      // The edge, not the bucket's CORS rules, decides what players see.
      OriginOverride: true,
    },
    RemoveHeadersConfig: {
      Items: s3ResponseHeaders.slice(0, REMOVE_HEADERS_LIMIT).map((header) => ({ Header: header })),
    },
  };
}

/**
 * Renders a CloudFormation template (JSON text) with the policy, the key group of private
 * playback (from the `PrivatePlaybackPublicKeyPem` parameter) and the distribution; resources
 * given by id in the options are left out.
 */
export function renderCloudFrontTemplate(
  options: CloudFrontOptions,
  rules: readonly CacheRule[] = cacheRules,
): string {
  const resources: Record<string, unknown> = {};
  const parsed = parseOrThrow(cloudFrontOptionsSchema, options, 'CloudFront options');
  if (!parsed.responseHeadersPolicyId) {
    resources[CLOUDFRONT_POLICY_LOGICAL_ID] = {
      Type: 'AWS::CloudFront::ResponseHeadersPolicy',
      Properties: { ResponseHeadersPolicyConfig: renderCloudFrontResponseHeadersPolicy(options) },
    };
  }
  const parameters: Record<string, unknown> = {};
  if (!parsed.privatePlaybackKeyGroupId) {
    parameters[CLOUDFRONT_PUBLIC_KEY_PARAMETER] = {
      Type: 'String',
      Description:
        'PEM public key (RSA 2048) whose private key signs the URLs or cookies of private channels',
    };
    resources[CLOUDFRONT_PUBLIC_KEY_LOGICAL_ID] = {
      Type: 'AWS::CloudFront::PublicKey',
      Properties: {
        PublicKeyConfig: {
          // Public key names are unique per account, so the stack name keeps two stacks apart.
          Name: { 'Fn::Sub': '${AWS::StackName}-private-playback' },
          CallerReference: { 'Fn::Sub': '${AWS::StackName}-private-playback' },
          EncodedKey: { Ref: CLOUDFRONT_PUBLIC_KEY_PARAMETER },
          Comment: 'Verifies signed URLs and cookies of private channels',
        },
      },
    };
    resources[CLOUDFRONT_KEY_GROUP_LOGICAL_ID] = {
      Type: 'AWS::CloudFront::KeyGroup',
      Properties: {
        KeyGroupConfig: {
          Name: { 'Fn::Sub': '${AWS::StackName}-private-playback' },
          Items: [{ Ref: CLOUDFRONT_PUBLIC_KEY_LOGICAL_ID }],
          Comment: 'Signers of private channels',
        },
      },
    };
  }
  resources[CLOUDFRONT_DISTRIBUTION_LOGICAL_ID] = {
    Type: 'AWS::CloudFront::Distribution',
    Properties: { DistributionConfig: renderCloudFrontDistribution(options, rules) },
  };
  const template = {
    AWSTemplateFormatVersion: '2010-09-09',
    Description: 'Hearth live HLS edge, generated by @hearth/cdn-config from the cache-rule table',
    ...(Object.keys(parameters).length > 0 ? { Parameters: parameters } : {}),
    Resources: resources,
    Outputs: {
      DistributionDomainName: {
        Description: 'Host name players load HLS from',
        Value: { 'Fn::GetAtt': [CLOUDFRONT_DISTRIBUTION_LOGICAL_ID, 'DomainName'] },
      },
    },
  };
  return `${JSON.stringify(template, null, 2)}\n`;
}
