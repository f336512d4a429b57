// Every diagnostic of the app goes through here, so that a stray console call anywhere else stays
// a lint error and the output keeps one recognisable prefix.

/** Reports something unexpected that the app recovered from, such as a malformed server message. */
export function warn(message: string, ...details: unknown[]): void {
  // eslint-disable-next-line no-console -- this module is the app's single console sink.
  console.warn(`[hearth] ${message}`, ...details);
}

/** Notes something the app decided that helps to explain its behaviour, and needs no action. */
export function info(message: string, ...details: unknown[]): void {
  // eslint-disable-next-line no-console -- this module is the app's single console sink.
  console.info(`[hearth] ${message}`, ...details);
}
