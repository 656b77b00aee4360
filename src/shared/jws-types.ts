/**
 * The `typ` header of each kind of JWS the appliance signs and gateways verify, in one
 * place that both sides may import (the gateway SDK never imports the appliance): a
 * distinct `typ` per kind keeps one from ever passing for another.
 */

/** The signed revocation snapshot (docs/protocol.md §3.1). */
export const SNAPSHOT_TYP = 'revocations+jwt';
