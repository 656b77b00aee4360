/**
 * Per-route body limits: the app default is 64 KiB; routes that take less say so, so an
 * oversized body is refused (413 `payload_too_large`) from its Content-Length, before
 * anything is read or parsed. Spread into the route options:
 * `app.post('/x', { ...bodyLimit('small'), schema, config }, handler)`.
 */
export const BODY_LIMITS = {
  /** Ids, approvals, small operator acts. */
  tiny: 1024,
  /** Challenges, activation secrets, grant requests in session mode. */
  small: 8 * 1024,
  /** Quotes with PCR values, enrollment with an EK certificate. */
  medium: 32 * 1024,
  /** Policy and CA bundle uploads. */
  large: 256 * 1024,
} as const;

export type BodyLimitSize = keyof typeof BODY_LIMITS;

export function bodyLimit(size: BodyLimitSize): { bodyLimit: number } {
  return { bodyLimit: BODY_LIMITS[size] };
}
