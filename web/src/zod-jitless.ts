import { z } from 'zod';

// The app runs under a Content-Security-Policy without 'unsafe-eval'. zod's compiled fast path
// needs `new Function`, and even its probe for it is reported as a CSP violation, so zod is told
// to go without. main.ts imports this module first, before any schema parses anything.
z.config({ jitless: true });
