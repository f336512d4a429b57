/** The cache-rule table, its schema, and the helpers that classify rules. */
export * from './cache-rules';
/** S3 response headers the edges strip. */
export * from './s3-headers';
/** The nginx edge config generator and its options schema. */
export * from './nginx';
/** Private channels: their key prefix, and the signed playback paths the edges check. */
export * from './private-playback';
/** The CloudFront distribution, response headers policy, and template generators. */
export * from './cloudfront';
export * from './nginx-process';
export * from './edge';
/** The TCP balancer config that puts several ingest nodes behind one RTMP URL. */
export * from './ingest-balancer';
