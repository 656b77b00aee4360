/**
 * The wire shape of a grant request's fields (PROTOCOL.md §3) before its proof is attached:
 * what a runtime builds (attester/attester.ts) and what the appliance receives
 * (src/grants/request.ts), in one place so the two sides cannot drift.
 */
export interface GrantRequestBody {
  readonly runtimeId: string;
  readonly requestId: string;
  readonly issuedAt: string;
  readonly action: string;
  readonly resource: string;
  readonly parametersDigest: string;
  readonly audience: string;
  readonly parentGrantId: string | null;
  readonly ttlSeconds: number;
}
