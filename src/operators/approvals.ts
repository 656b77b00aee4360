/**
 * Dual control: M-of-N approvals for named acts (`key.destroy`, `ekca.replace`,
 * `refpolicy.disable`, `refpolicy.enable`, `refpolicy.put`, `enrollrules.replace`,
 * `audit_key.rotate`, `operator.put`,
 * `operator.remove`). A person requests an act on a target (its parameters); M other
 * people with an allowed role approve it; the act's code calls `perform(act, params, fn,
 * precheck)` which checks the target's state, then consumes, then acts. Consumption
 * succeeds once, when M approvals from distinct people (never the requester) bound to
 * exactly that act and those parameters are unexpired and each approver's credential is
 * still valid (not revoked, not expired, the person still holding the role). One open
 * request per act and parameters; at most `maxOpenPerPerson` open requests per person.
 * Every step is reported to `onEvent` (the audit log) before it takes effect.
 */
import { randomBytes } from 'node:crypto';
import { BadRequestError } from '../shared/errors.js';
import {
  APPROVAL_ACTS,
  personOfRef,
  requesterOf,
  type ApprovalAct,
  type ApprovalActorRef,
  type ApprovalParams,
  type ApprovalRecord,
  type ApprovalStore,
} from './approval-store.port.js';
import {
  ApprovalDuplicateActorError,
  ApprovalExpiredError,
  ApprovalNotFoundError,
  ApprovalOwnRequestError,
  ApprovalRequestLimitError,
  ApprovalRequestOpenError,
  ApprovalRequiredError,
  ApprovalReusedError,
  ForbiddenError,
} from './errors.js';
import type { OperatorActor, Role } from './roles.js';
import { jcsSha256Hex } from '../shared/jcs.js';

export interface ActPolicy {
  /** M: distinct approvals needed. */
  readonly required: number;
  /** Roles whose holders may request and approve the act. */
  readonly roles: readonly Role[];
  /** How long a request stays open. */
  readonly requestTtlSeconds: number;
  /** How long one approval stays valid after it is given. */
  readonly approvalTtlSeconds: number;
}

export type ApprovalPolicy = Readonly<Record<ApprovalAct, ActPolicy>>;

export const DEFAULT_APPROVAL_POLICY: ApprovalPolicy = {
  'key.destroy': {
    required: 2,
    roles: ['key_custodian'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  'ekca.replace': {
    required: 2,
    roles: ['operator'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  'refpolicy.disable': {
    required: 2,
    roles: ['operator'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  // Re-enabling widens what quote verification accepts (the policy may have been disabled
  // because its PCR values admit vulnerable firmware): as guarded as disabling it.
  'refpolicy.enable': {
    required: 2,
    roles: ['operator'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  // Auditors pin the audit key: one custodian alone must not be able to change it.
  'audit_key.rotate': {
    required: 2,
    roles: ['key_custodian'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  // The registry decides who is a person and which roles they hold, so whose approvals
  // count: changing it is itself dual-controlled.
  'operator.put': {
    required: 2,
    roles: ['operator'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  'operator.remove': {
    required: 2,
    roles: ['operator'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  // The rules decide what every future runtime is (its labels, so its grants): as guarded
  // as the EK CA bundle that decides which TPMs may enroll at all.
  'enrollrules.replace': {
    required: 2,
    roles: ['operator'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
  // Adding or replacing a reference policy (issue 19, golden values) decides what boots
  // are trusted: bound to the JCS SHA-256 of the exact policy JSON.
  'refpolicy.put': {
    required: 2,
    roles: ['operator'],
    requestTtlSeconds: 24 * 3600,
    approvalTtlSeconds: 3600,
  },
};

/** Open (unconsumed, unexpired) requests one person may hold at a time, by default. */
export const DEFAULT_MAX_OPEN_REQUESTS_PER_PERSON = 16;

/** The default policy with M and the lifetimes from the configuration (GRANTOR_APPROVAL*). */
export function approvalPolicyFromSettings(settings: {
  readonly required: number;
  readonly requestTtlSeconds: number;
  readonly approvalTtlSeconds: number;
}): ApprovalPolicy {
  const entries = APPROVAL_ACTS.map((act) => [
    act,
    { ...DEFAULT_APPROVAL_POLICY[act], ...settings },
  ]);
  return Object.fromEntries(entries) as Record<ApprovalAct, ActPolicy>;
}

export type ApprovalEventType = 'approval.requested' | 'approval.given' | 'approval.consumed';

/** One audit-worthy step, with the actor who took it. */
export interface ApprovalEvent {
  readonly type: ApprovalEventType;
  readonly approvalId: string;
  readonly act: ApprovalAct;
  readonly target: string;
  readonly params: ApprovalParams;
  /** Who requested or approved; for `approval.consumed`, the approvers. */
  readonly actors: readonly ApprovalActorRef[];
  readonly time: string;
}

export interface ApprovalsOptions {
  readonly store: ApprovalStore;
  readonly policy?: ApprovalPolicy;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  readonly now?: () => number;
  /** Called (and awaited) before each step takes effect: the lead wires the audit log here. */
  readonly onEvent?: (event: ApprovalEvent) => Promise<void>;
  /**
   * Is the credential an approval was given with still valid now (not revoked, not
   * expired, its person still holding the role)? Asked of every approval when it is used;
   * default: yes (service tests without credentials).
   */
  readonly credentialValid?: (ref: ApprovalActorRef) => Promise<boolean>;
  /** At most this many open requests per person (default 16). */
  readonly maxOpenPerPerson?: number;
}

const MAX_PARAMS_BYTES = 4096;
const MAX_LIST = 200;

function isAct(value: string): value is ApprovalAct {
  return (APPROVAL_ACTS as readonly string[]).includes(value);
}

/** Hex SHA-256 of JCS({act, params}): approvals are bound to exactly this. */
export function approvalTarget(act: ApprovalAct, params: ApprovalParams): string {
  return jcsSha256Hex({ act, params });
}

function ref(actor: OperatorActor): ApprovalActorRef {
  return {
    id: actor.id,
    person: actor.person,
    name: actor.name,
    role: actor.role,
    credentialExpiresAt: actor.expiresAt,
  };
}

function validatePolicy(policy: ApprovalPolicy): void {
  for (const act of APPROVAL_ACTS) {
    const p = policy[act];
    if (!Number.isInteger(p.required) || p.required < 1 || p.roles.length === 0) {
      throw new TypeError(`approval policy for ${act}: required >= 1 and at least one role`);
    }
    if (p.requestTtlSeconds <= 0 || p.approvalTtlSeconds <= 0) {
      throw new TypeError(`approval policy for ${act}: ttls must be positive`);
    }
  }
}

export class Approvals {
  readonly #store: ApprovalStore;
  readonly #policy: ApprovalPolicy;
  readonly #clock: () => Date;
  readonly #onEvent: (event: ApprovalEvent) => Promise<void>;
  readonly #credentialValid: (ref: ApprovalActorRef) => Promise<boolean>;
  readonly #maxOpenPerPerson: number;
  // Request, approve and consume read-modify-write one record: one at a time, so two concurrent
  // consumes can never both succeed.
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: ApprovalsOptions) {
    this.#store = options.store;
    this.#policy = options.policy ?? DEFAULT_APPROVAL_POLICY;
    const now = options.now ?? Date.now;
    this.#clock = () => new Date(now());
    this.#onEvent = options.onEvent ?? (() => Promise.resolve());
    this.#credentialValid = options.credentialValid ?? (() => Promise.resolve(true));
    this.#maxOpenPerPerson = options.maxOpenPerPerson ?? DEFAULT_MAX_OPEN_REQUESTS_PER_PERSON;
    validatePolicy(this.#policy);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  #resolve(act: string): { act: ApprovalAct; policy: ActPolicy } {
    if (!isAct(act)) throw new BadRequestError(`unknown act ${act}`);
    return { act, policy: this.#policy[act] };
  }

  #requireRole(actor: OperatorActor, act: ApprovalAct, policy: ActPolicy): void {
    if (!policy.roles.includes(actor.role)) {
      throw new ForbiddenError(`${act} needs role ${policy.roles.join(' or ')}`, {
        details: { required: [...policy.roles], role: actor.role },
      });
    }
  }

  /**
   * Open a request for `act` on `params`: refused while another request for the same act
   * and parameters is open (approve that one: a spare pre-approved request would let one
   * person repeat the act later alone), and when the person already holds
   * `maxOpenPerPerson` open requests.
   */
  async request(
    actor: OperatorActor,
    actName: string,
    params: ApprovalParams,
  ): Promise<ApprovalRecord> {
    const { act, policy } = this.#resolve(actName);
    this.#requireRole(actor, act, policy);
    const snapshot = structuredClone(params);
    if (Buffer.byteLength(JSON.stringify(snapshot)) > MAX_PARAMS_BYTES) {
      throw new BadRequestError(`act parameters exceed ${MAX_PARAMS_BYTES} bytes`);
    }
    const target = approvalTarget(act, snapshot);
    return this.#serial(async () => {
      const now = this.#clock();
      const t = now.getTime();
      const live = (r: ApprovalRecord) => r.consumedAt === undefined && t < Date.parse(r.expiresAt);
      const open = (await this.#store.byTarget(target)).find(live);
      if (open !== undefined) {
        throw new ApprovalRequestOpenError(`request ${open.id} for this ${act} is still open`, {
          details: { approvalId: open.id, act, target },
        });
      }
      const mine = (await this.#store.openBy(actor.person)).filter(live);
      if (mine.length >= this.#maxOpenPerPerson) {
        throw new ApprovalRequestLimitError(
          `${actor.person} already has ${mine.length} open approval requests`,
          { details: { open: mine.length, limit: this.#maxOpenPerPerson } },
        );
      }
      const record: ApprovalRecord = {
        id: `apr_${randomBytes(8).toString('hex')}`,
        act,
        params: snapshot,
        target,
        requestedBy: ref(actor),
        createdAt: now.toISOString(),
        expiresAt: new Date(t + policy.requestTtlSeconds * 1000).toISOString(),
        approvals: [],
      };
      await this.#emit('approval.requested', record, [record.requestedBy], now);
      await this.#store.put(record);
      return record;
    });
  }

  /** Add `actor`'s approval to request `id`. */
  approve(actor: OperatorActor, id: string): Promise<ApprovalRecord> {
    return this.#serial(async () => {
      const record = await this.#store.get(id);
      if (record === undefined) throw new ApprovalNotFoundError(id);
      const { policy } = this.#resolve(record.act);
      const now = this.#clock();
      if (record.consumedAt !== undefined) {
        throw new ApprovalReusedError(`approval request ${id} was already used`, {
          details: { approvalId: id, consumedAt: record.consumedAt },
        });
      }
      if (now.getTime() >= Date.parse(record.expiresAt)) {
        throw new ApprovalExpiredError(`approval request ${id} has expired`, {
          details: { approvalId: id, expiresAt: record.expiresAt },
        });
      }
      this.#requireRole(actor, record.act, policy);
      // Dual control: the requester plus M others, never the requester approving itself.
      if (requesterOf(record) === actor.person) {
        throw new ApprovalOwnRequestError(`${actor.person} opened ${id} and cannot approve it`, {
          details: { approvalId: id },
        });
      }
      // Distinct people, whatever credential each uses.
      if (
        record.approvals.some(
          (a) => a.actor.id === actor.id || personOfRef(a.actor) === actor.person,
        )
      ) {
        throw new ApprovalDuplicateActorError(`${actor.person} has already approved ${id}`, {
          details: { approvalId: id },
        });
      }
      const expiresAt = Math.min(
        now.getTime() + policy.approvalTtlSeconds * 1000,
        Date.parse(record.expiresAt),
      );
      const updated: ApprovalRecord = {
        ...record,
        approvals: [
          ...record.approvals,
          {
            actor: ref(actor),
            approvedAt: now.toISOString(),
            expiresAt: new Date(expiresAt).toISOString(),
          },
        ],
      };
      await this.#emit('approval.given', updated, [ref(actor)], now);
      await this.#store.put(updated);
      return updated;
    });
  }

  /**
   * Use the approvals for `act` on exactly `params`: succeeds once, when one open request
   * for that target holds M distinct unexpired approvals; it is then closed for good.
   * The act's own code calls this immediately before acting.
   */
  consume(
    actName: string,
    params: ApprovalParams,
    precheck?: () => Promise<void> | void,
  ): Promise<ApprovalRecord> {
    return this.#serial(async () => {
      const { act, policy } = this.#resolve(actName);
      const snapshot = structuredClone(params);
      // The target's state first: a refused act must not use up its approvals.
      await precheck?.();
      const target = approvalTarget(act, snapshot);
      const now = this.#clock();
      const t = now.getTime();
      const records = await this.#store.byTarget(target);
      const open = records.filter((r) => r.consumedAt === undefined);
      const live = open.filter((r) => t < Date.parse(r.expiresAt));
      // Counted: unexpired approvals whose credential is still valid now, one per person,
      // never the requester's (records written before these rules are held to them too).
      const valid = async (r: ApprovalRecord) => {
        const seen = new Set<string>([requesterOf(r)]);
        const out: ApprovalActorRef[] = [];
        for (const a of r.approvals) {
          const person = personOfRef(a.actor);
          if (seen.has(person) || t >= Date.parse(a.expiresAt)) continue;
          const expires = a.actor.credentialExpiresAt;
          if (expires !== undefined && t >= Date.parse(expires)) continue;
          if (!(await this.#credentialValid(a.actor))) continue;
          seen.add(person);
          out.push(a.actor);
        }
        return out;
      };
      let ready: { record: ApprovalRecord; approvers: ApprovalActorRef[] } | undefined;
      let have = 0;
      for (const r of live) {
        const approvers = await valid(r);
        have = Math.max(have, approvers.length);
        if (approvers.length >= policy.required) {
          ready = { record: r, approvers };
          break;
        }
      }
      if (ready === undefined) {
        // The parameters as bound: a requester who sent another spelling sees what counts.
        const details = { act, target, params: snapshot, required: policy.required };
        if (records.length > 0 && open.length === 0) {
          throw new ApprovalReusedError(`the approvals for this ${act} were already used`, {
            details,
          });
        }
        // Expired: the request, or enough of its approvals, ran out of time. Approvals whose
        // credential was revoked since are not expired: more approvals are required.
        const stale =
          (open.length > 0 && live.length === 0) ||
          live.some(
            (r) =>
              r.approvals.length >= policy.required &&
              r.approvals.filter((a) => t < Date.parse(a.expiresAt)).length < policy.required,
          );
        if (stale) {
          throw new ApprovalExpiredError(`the approvals for this ${act} have expired`, {
            details,
          });
        }
        throw new ApprovalRequiredError(
          `${act} needs ${policy.required} distinct approvals, has ${have}`,
          { details: { ...details, have } },
        );
      }
      const consumed: ApprovalRecord = { ...ready.record, consumedAt: now.toISOString() };
      await this.#emit('approval.consumed', consumed, ready.approvers, now);
      await this.#store.put(consumed);
      return consumed;
    });
  }

  /**
   * Check the target (`precheck`: throws the act's own refusal, e.g. key_not_found),
   * consume the approvals for `act` on `params`, then run the act.
   */
  async perform<T>(
    act: string,
    params: ApprovalParams,
    fn: () => Promise<T>,
    precheck?: () => Promise<void> | void,
  ): Promise<T> {
    await this.consume(act, params, precheck);
    return fn();
  }

  async get(id: string): Promise<ApprovalRecord> {
    const record = await this.#store.get(id);
    if (record === undefined) throw new ApprovalNotFoundError(id);
    return record;
  }

  list(limit = 50): Promise<ApprovalRecord[]> {
    return this.#store.list(Math.max(1, Math.min(limit, MAX_LIST)));
  }

  #emit(
    type: ApprovalEventType,
    record: ApprovalRecord,
    actors: ApprovalEvent['actors'],
    now: Date,
  ): Promise<void> {
    return this.#onEvent({
      type,
      approvalId: record.id,
      act: record.act,
      target: record.target,
      params: record.params,
      actors,
      time: now.toISOString(),
    });
  }
}
