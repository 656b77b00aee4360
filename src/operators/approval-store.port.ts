/** Where dual-control approval requests live: one record per request, approvals inside. */
import { Type, type Static } from 'typebox';
import { normaliseIdentifier } from './people.js';
import { RoleSchema } from './token-store.port.js';

export const APPROVAL_ACTS = [
  'key.destroy',
  'ekca.replace',
  'refpolicy.disable',
  'refpolicy.enable',
  'enrollrules.replace',
  'audit_key.rotate',
  'operator.put',
  'operator.remove',
  'refpolicy.put',
] as const;
export type ApprovalAct = (typeof APPROVAL_ACTS)[number];

export const ApprovalActSchema = Type.Union([
  Type.Literal('key.destroy'),
  Type.Literal('ekca.replace'),
  Type.Literal('refpolicy.disable'),
  Type.Literal('refpolicy.enable'),
  Type.Literal('enrollrules.replace'),
  Type.Literal('audit_key.rotate'),
  Type.Literal('operator.put'),
  Type.Literal('operator.remove'),
  Type.Literal('refpolicy.put'),
]);

/** The act's parameters: a small flat object (e.g. `{kid}`), bound by its hash. */
export const ApprovalParamsSchema = Type.Record(
  Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }),
  Type.Union([Type.String({ maxLength: 512 }), Type.Number(), Type.Boolean(), Type.Null()]),
  // A Record with a key pattern does not refuse other keys by itself.
  { maxProperties: 16, additionalProperties: false },
);
export type ApprovalParams = Static<typeof ApprovalParamsSchema>;

const ActorRefSchema = Type.Object(
  {
    /** The credential: `tok_...` or `cert:<issuer hash>:<serial>`. */
    id: Type.String(),
    /** The person (operator registry id); records from before the registry: absent. */
    person: Type.Optional(Type.String()),
    name: Type.String(),
    role: RoleSchema,
    /** When the credential expires; checked again when the approval is used. */
    credentialExpiresAt: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type ApprovalActorRef = Static<typeof ActorRefSchema>;

export const GivenApprovalSchema = Type.Object(
  {
    actor: ActorRefSchema,
    approvedAt: Type.String(),
    expiresAt: Type.String(),
  },
  { additionalProperties: false },
);

export const ApprovalRecordSchema = Type.Object(
  {
    id: Type.String({ pattern: '^apr_[0-9a-f]{16}$' }),
    act: ApprovalActSchema,
    params: ApprovalParamsSchema,
    /** Hex SHA-256 of JCS({act, params}): what the approvals are bound to. */
    target: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    requestedBy: ActorRefSchema,
    createdAt: Type.String(),
    expiresAt: Type.String(),
    approvals: Type.Array(GivenApprovalSchema),
    consumedAt: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type ApprovalRecord = Static<typeof ApprovalRecordSchema>;

export interface ApprovalStore {
  get(id: string): Promise<ApprovalRecord | undefined>;
  put(record: ApprovalRecord): Promise<void>;
  /** Every request bound to `target`, oldest first. */
  byTarget(target: string): Promise<ApprovalRecord[]>;
  /** The requests `person` opened that are not consumed (expired ones included). */
  openBy(person: string): Promise<ApprovalRecord[]>;
  /** The newest `limit` requests, newest first. */
  list(limit: number): Promise<ApprovalRecord[]>;
}

/** The person who opened a request (older records: the requester's name, normalised). */
export function requesterOf(record: ApprovalRecord): string {
  return personOfRef(record.requestedBy);
}

/** The person behind an actor reference (older records: the name, normalised). */
export function personOfRef(ref: ApprovalActorRef): string {
  return ref.person ?? normaliseIdentifier(ref.name);
}
