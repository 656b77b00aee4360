/**
 * The one logger type of the domains: the slice of a pino logger they use (pino's Logger
 * satisfies it), so a domain can be built with a silent one in tests. Redaction and the
 * process logger itself are in logger.ts.
 */
export interface DomainLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLogger: DomainLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
