import { describe, expect, it } from 'vitest';
import { cacheRules, type CacheRule } from '../src/cache-rules';
import {
  CLOUDFRONT_DISTRIBUTION_LOGICAL_ID,
  CLOUDFRONT_POLICY_LOGICAL_ID,
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

describe('renderCloudFrontDistribution()', () => {
  it('renderCloudFrontDistribution() renders one behavior per rule, in table order', () => {
    expect(renderCloudFrontDistribution(options).CacheBehaviors).toEqual([
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
    const before = renderCloudFrontDistribution(options).CacheBehaviors;
    const after = renderCloudFrontDistribution(options, rules).CacheBehaviors;
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
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
      Outputs: Record<string, unknown>;
    };
    expect(Object.keys(template.Resources)).toEqual([
      CLOUDFRONT_POLICY_LOGICAL_ID,
      CLOUDFRONT_DISTRIBUTION_LOGICAL_ID,
    ]);
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

  it('renderCloudFrontTemplate() with an existing policy id leaves the policy resource out', () => {
    const template = JSON.parse(
      renderCloudFrontTemplate({ ...options, responseHeadersPolicyId: 'abc-123' }),
    ) as { Resources: Record<string, unknown> };
    expect(Object.keys(template.Resources)).toEqual([CLOUDFRONT_DISTRIBUTION_LOGICAL_ID]);
  });
});
