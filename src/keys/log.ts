/** The slice of a pino logger the key domain uses (pino's Logger satisfies it). */
export interface KeysLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLogger: KeysLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
