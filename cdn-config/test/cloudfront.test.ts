import { describe, expect, it } from 'vitest';
import { cacheRules, type CacheRule } from '../src/cache-rules';
import {
  CLOUDFRONT_DISTRIBUTION_LOGICAL_ID,
  CLOUDFRONT_KEY_GROUP_LOGICAL_ID,
  CLOUDFRONT_POLICY_LOGICAL_ID,
  CLOUDFRONT_PUBLIC_KEY_LOGICAL_ID,
  renderCloudFrontDistribution,
  renderCloudFrontResponseHeadersPolicy,
  renderCloudFrontTemplate,
  type CloudFrontOptions,
} from '../src/cloudfront';

const options: CloudFrontOptions = { originDomainName: 'hearth-live.s3.eu-west-1.amazonaws.com' };
const YEAR = 31_536_000;
const policyRef = { Ref: 'HlsCorsResponseHeadersPolicy' };
const methods = ['GET', 'HEAD', 'OPTIONS'];
const forwarded = {
  QueryString: false,
  Cookies: { Forward: 'none' },
  Headers: ['Origin', 'Access-Control-Request-Method', 'Access-Control-Request-Headers'],
};

function defaultBehavior(ttl: number, compress: boolean): Record<string, unknown> {
  return {
    TargetOriginId: 'hls-s3-origin',
    ViewerProtocolPolicy: 'redirect-to-https',
    AllowedMethods: methods,
    CachedMethods: methods,
    Compress: compress,
    MinTTL: ttl,
    DefaultTTL: ttl,
    MaxTTL: ttl,
    ForwardedValues: forwarded,
    ResponseHeadersPolicyId: policyRef,
  };
}

function behavior(pathPattern: string, ttl: number, compress: boolean): Record<string, unknown> {
  return { PathPattern: pathPattern, ...defaultBehavior(ttl, compress) };
}

const templateKeyGroup = { Enabled: true, Items: [{ Ref: 'PrivatePlaybackKeyGroup' }] };

function signedBehavior(
  pathPattern: string,
  ttl: number,
  compress: boolean,
  trustedKeyGroups: unknown = templateKeyGroup,
): Record<string, unknown> {
  return { ...behavior(pathPattern, ttl, compress), TrustedKeyGroups: trustedKeyGroups };
}

/** The public behaviors: those after the private ones. */
function publicBehaviors(options: CloudFrontOptions, rules?: CacheRule[]): unknown[] {
  return renderCloudFrontDistribution(options, rules).CacheBehaviors.filter(
    (b) => !b.PathPattern.startsWith('private/'),
  );
}

describe('renderCloudFrontDistribution()', () => {
  it('renderCloudFrontDistribution() renders a signed then a public behavior per rule, in table order', () => {
    expect(renderCloudFrontDistribution(options).CacheBehaviors).toEqual([
      signedBehavior('private/*master.m3u8', 0, true),
      signedBehavior('private/*.m3u8', 1, true),
      signedBehavior('private/*.ts', YEAR, false),
      signedBehavior('private/*.m4s', YEAR, false),
      signedBehavior('private/*.mp4', YEAR, false),
      signedBehavior('private/*', 0, false),
      behavior('*master.m3u8', 0, true),
      behavior('*.m3u8', 1, true),
      behavior('*.ts', YEAR, false),
      behavior('*.m4s', YEAR, false),
      behavior('*.mp4', YEAR, false),
    ]);
  });

  it('renderCloudFrontDistribution() renders the S3 origin and an uncached default behavior', () => {
    const config = renderCloudFrontDistribution(options);
    expect(config.Origins).toEqual([
      {
        Id: 'hls-s3-origin',
        DomainName: 'hearth-live.s3.eu-west-1.amazonaws.com',
        S3OriginConfig: { OriginAccessIdentity: '' },
      },
    ]);
    expect(config.DefaultCacheBehavior).toEqual(defaultBehavior(0, false));
    expect(config).toMatchObject({
      Enabled: true,
      HttpVersion: 'http2and3',
      IPV6Enabled: true,
      PriceClass: 'PriceClass_All',
    });
  });

  it('renderCloudFrontDistribution() with a changed segment TTL changes only that behavior', () => {
    const rules: CacheRule[] = cacheRules.map((rule) =>
      rule.name === 'ts-segment' ? { ...rule, edgeTtlSeconds: 600 } : rule,
    );
    const before = publicBehaviors(options);
    const after = publicBehaviors(options, rules);
    expect(after[2]).toEqual(behavior('*.ts', 600, false));
    expect(after.filter((_, index) => index !== 2)).toEqual(
      before.filter((_, index) => index !== 2),
    );
  });

  it('renderCloudFrontDistribution() with access control, shield and a policy id uses them', () => {
    const config = renderCloudFrontDistribution({
      ...options,
      originAccessControlId: 'E2QWRUHAPOMQZL',
      originShieldRegion: 'eu-west-1',
      responseHeadersPolicyId: '5cc3b908-e619-4b99-88e5-2cf7f45965bd',
      priceClass: 'PriceClass_100',
    });
    expect(config.Origins[0]).toEqual({
      Id: 'hls-s3-origin',
      DomainName: 'hearth-live.s3.eu-west-1.amazonaws.com',
      S3OriginConfig: { OriginAccessIdentity: '' },
      OriginAccessControlId: 'E2QWRUHAPOMQZL',
      OriginShield: { Enabled: true, OriginShieldRegion: 'eu-west-1' },
    });
    expect(new Set(config.CacheBehaviors.map((b) => b.ResponseHeadersPolicyId))).toEqual(
      new Set(['5cc3b908-e619-4b99-88e5-2cf7f45965bd']),
    );
    expect(config.PriceClass).toBe('PriceClass_100');
  });

  it('renderCloudFrontDistribution() with an existing key group trusts it on every private behavior', () => {
    const config = renderCloudFrontDistribution({
      ...options,
      privatePlaybackKeyGroupId: 'b0a2f2ad-3d0e-4e3c-9a57-7a0f3cf0e1c2',
    });
    const signed = config.CacheBehaviors.filter((b) => b.TrustedKeyGroups !== undefined);
    expect(signed.map((b) => b.PathPattern)).toEqual([
      'private/*master.m3u8',
      'private/*.m3u8',
      'private/*.ts',
      'private/*.m4s',
      'private/*.mp4',
      'private/*',
    ]);
    for (const b of signed) {
      expect(b.TrustedKeyGroups).toEqual({
        Enabled: true,
        Items: ['b0a2f2ad-3d0e-4e3c-9a57-7a0f3cf0e1c2'],
      });
    }
    // No public behavior can match a private key first: all of them come after.
    const firstPublic = config.CacheBehaviors.findIndex((b) => b.TrustedKeyGroups === undefined);
    expect(firstPublic).toBe(signed.length);
  });

  it('renderCloudFrontDistribution() with a live origin sends live playlists (keyed with the blocking-reload query only) and live media there first', () => {
    const distribution = renderCloudFrontDistribution({
      ...options,
      liveOriginDomainName: 'live-origin.example.com',
    });
    expect(distribution.Origins[1]).toEqual({
      Id: 'hls-live-origin',
      DomainName: 'live-origin.example.com',
      CustomOriginConfig: {
        HTTPSPort: 443,
        OriginProtocolPolicy: 'https-only',
        OriginSSLProtocols: ['TLSv1.2'],
        OriginReadTimeout: 30,
        OriginKeepaliveTimeout: 60,
      },
    });
    const live = {
      TargetOriginId: 'hls-live-origin',
      ForwardedValues: {
        ...forwarded,
        QueryString: true,
        QueryStringCacheKeys: ['_HLS_msn', '_HLS_part'],
      },
    };
    expect(distribution.CacheBehaviors.slice(0, 3)).toEqual([
      { ...behavior('live/*.m3u8', 1, true), ...live },
      { ...behavior('live/*.m4s', YEAR, false), ...live },
      { ...behavior('live/*.mp4', YEAR, false), ...live },
    ]);
    // Everything else, private channels included, is as without a live origin.
    expect(distribution.CacheBehaviors.slice(3)).toEqual(
      renderCloudFrontDistribution(options).CacheBehaviors,
    );
  });

  it('renderCloudFrontDistribution() with a URL as domain name throws a TypeError', () => {
    expect(() =>
      renderCloudFrontDistribution({ originDomainName: 'https://bucket.s3.amazonaws.com/' }),
    ).toThrow(/Invalid CloudFront options:[\s\S]*originDomainName/);
    expect(() =>
      renderCloudFrontDistribution({ ...options, priceClass: 'Cheap' as never }),
    ).toThrow(TypeError);
  });
});

describe('renderCloudFrontResponseHeadersPolicy()', () => {
  it('renderCloudFrontResponseHeadersPolicy() sets CORS and removes at most 10 S3 headers', () => {
    const policy = renderCloudFrontResponseHeadersPolicy({
      ...options,
      corsAllowedOrigin: 'https://watch.example.com',
    });
    expect(policy.CorsConfig).toEqual({
      AccessControlAllowCredentials: false,
      AccessControlAllowHeaders: {
        Items: ['Range', 'If-Range', 'If-None-Match', 'If-Modified-Since'],
      },
      AccessControlAllowMethods: { Items: methods },
      AccessControlAllowOrigins: { Items: ['https://watch.example.com'] },
      AccessControlExposeHeaders: { Items: ['Content-Length', 'Content-Range'] },
      AccessControlMaxAgeSec: 86_400,
      OriginOverride: true,
    });
    const removed = policy.RemoveHeadersConfig.Items.map((item) => item.Header);
    expect(removed).toHaveLength(10);
    expect(removed.slice(0, 3)).toEqual([
      'x-amz-id-2',
      'x-amz-request-id',
      'x-amz-server-side-encryption',
    ]);
  });
});

describe('renderCloudFrontTemplate()', () => {
  it('renderCloudFrontTemplate() returns JSON with the policy, the distribution and an output', () => {
    const template = JSON.parse(renderCloudFrontTemplate(options)) as {
      Parameters: Record<string, unknown>;
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
      Outputs: Record<string, unknown>;
    };
    expect(Object.keys(template.Resources)).toEqual([
      CLOUDFRONT_POLICY_LOGICAL_ID,
      CLOUDFRONT_PUBLIC_KEY_LOGICAL_ID,
      CLOUDFRONT_KEY_GROUP_LOGICAL_ID,
      CLOUDFRONT_DISTRIBUTION_LOGICAL_ID,
    ]);
    expect(template.Parameters).toEqual({
      PrivatePlaybackPublicKeyPem: { Type: 'String', Description: expect.any(String) },
    });
    expect(template.Resources[CLOUDFRONT_PUBLIC_KEY_LOGICAL_ID]).toMatchObject({
      Type: 'AWS::CloudFront::PublicKey',
      Properties: { PublicKeyConfig: { EncodedKey: { Ref: 'PrivatePlaybackPublicKeyPem' } } },
    });
    expect(template.Resources[CLOUDFRONT_KEY_GROUP_LOGICAL_ID]).toMatchObject({
      Type: 'AWS::CloudFront::KeyGroup',
      Properties: { KeyGroupConfig: { Items: [{ Ref: CLOUDFRONT_PUBLIC_KEY_LOGICAL_ID }] } },
    });
    expect(template.Resources[CLOUDFRONT_POLICY_LOGICAL_ID]).toEqual({
      Type: 'AWS::CloudFront::ResponseHeadersPolicy',
      Properties: { ResponseHeadersPolicyConfig: renderCloudFrontResponseHeadersPolicy(options) },
    });
    expect(template.Resources[CLOUDFRONT_DISTRIBUTION_LOGICAL_ID]).toEqual({
      Type: 'AWS::CloudFront::Distribution',
      Properties: { DistributionConfig: renderCloudFrontDistribution(options) },
    });
    expect(template.Outputs).toEqual({
      DistributionDomainName: {
        Description: 'Host name players load HLS from',
        Value: { 'Fn::GetAtt': [CLOUDFRONT_DISTRIBUTION_LOGICAL_ID, 'DomainName'] },
      },
    });
  });

  it('renderCloudFrontTemplate() with an existing policy and key group leaves their resources out', () => {
    const template = JSON.parse(
      renderCloudFrontTemplate({
        ...options,
        responseHeadersPolicyId: 'abc-123',
        privatePlaybackKeyGroupId: 'def-456',
      }),
    ) as { Parameters?: unknown; Resources: Record<string, unknown> };
    expect(Object.keys(template.Resources)).toEqual([CLOUDFRONT_DISTRIBUTION_LOGICAL_ID]);
    expect(template.Parameters).toBeUndefined();
  });
});
