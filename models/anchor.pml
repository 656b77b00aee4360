/* The audit anchor of grantor as a Promela model (Spin 6).
   One appliance appends N batches (store write, NV extend, NV increment; a crash can stop it
   after any step), then restarts and runs the start-up check. An attacker holding the disk
   and the TPM owner authorisation, but not the HSM, may act while the appliance is down:
   truncate or rewrite the store, change the store's meta genesis, undefine and define the
   NV indices again, and write them where their policy lets it.
   Safety: whenever the start-up check accepts, every acknowledged batch is in the store,
   unchanged.
   Variants (models/README.md; scripts/check-model runs each and checks its verdict):
   (none)     the design before issue 13: genesis read from the store, an empty store on an
              anchor at its genesis value silently becomes a new log. Violated.
   -DPINONLY  THE CODE NOW (src/audit/log.ts): genesis pinned in the anchor pin, never read
              from the store; start-up never creates a log (store_missing); NV writes still
              under owner authorisation. Violated by a same-length rewrite (issue 13 item 3).
   -DPINONLY -DSHORTER  what the code now guarantees: no accepted store is SHORTER than what
              was acknowledged. Holds.
   -DFIXED    issue 13 item 3 on top: NV writes need a policy only the HSM satisfies
              (TPM2_PolicySigned), that policy part of the pinned NV names. Holds.
   -DREACH    with -DFIXED or -DPINONLY: an honest run is accepted (not vacuous).
   The start-up check below mirrors AuditLog.startUp/reconcile; each refusal names the code's
   reason. Not modelled: the bus (the code reads the anchor only through NV_Certify against
   the pinned AK, test/audit/interposer.test.ts) and entries (one root per batch). */

#define N 3          /* honest batches */
#define K 4          /* attacker moves */
#define HSM 1        /* index policy: writes need the HSM's signature */
#define OWNER 2      /* index policy: writes need owner auth (turn 2) */
#define ATT 3        /* index policy chosen by the attacker */

byte roots[N+1];     /* store: batch roots; honest root of batch k is k, forged ones >= 8 */
byte b;              /* store: batches */
byte g;              /* store meta: genesis counter */
byte c; bool cw; byte cpol;   /* NV counter: value, written, policy */
int  e; bool ew; byte epol;   /* NV extend: value (roots packed 4 bits each), written, policy */
byte maxc;           /* highest count any counter of this TPM has held */
byte G;              /* genesis pinned in operator configuration */
byte acked;          /* batches acknowledged (grants answered) */
bool meta = true;    /* the store exists (its metadata); the attacker may delete it */

inline chain(n, out) {
  out = 0; i = 0;
  do :: i < n -> out = out * 16 + roots[i]; i++ :: else -> break od
}
inline incr() { c++; if :: c > maxc -> maxc = c :: else fi; cw = true }

/* may the attacker write an index with policy p? (no HSM) */
#define ATTWRITES(p) ((p) == ATT || (p) == OWNER)

active proctype world() {
  byte i, k, moves, want; int ch;
  /* provisioning */
#if defined(FIXED)
  cpol = HSM; epol = HSM;
#else
  cpol = OWNER; epol = OWNER;
#endif
  c = maxc; incr(); e = 0; ew = true; G = c; g = c; b = 0;   /* extend index written once with the genesis value 0 */

  /* the appliance appends; a crash may come after any step */
  k = 1;
  do
  :: k <= N ->
       roots[b] = k; b++;
       if :: true :: break fi;          /* crash after the store write */
       e = e * 16 + k;
       if :: true :: break fi;          /* crash after the extend */
       incr(); acked = k; k++
  :: k <= N -> break                      /* crash between batches */
  :: k > N -> break
  od;

  /* the attacker, while the appliance is down */
  moves = 0;
  do
  :: moves < K ->
       moves++;
       if
       :: b > 0 -> b--                                        /* truncate / restore older copy */
       :: b > 0 -> select(i : 0 .. N-1); if :: i < b -> roots[i] = 8 + i :: else fi   /* rewrite */
       :: b < N -> roots[b] = 8 + b; b++                      /* append forged */
       :: select(i : 0 .. 9); g = i                           /* edit store meta */
       :: b = 0; meta = false                                 /* delete the store */
       :: select(i : 1 .. 3); if :: i == 2 -> skip :: else -> cpol = i fi; c = maxc; cw = false   /* undefine + define counter */
       :: select(i : 1 .. 3); if :: i == 2 -> skip :: else -> epol = i fi; e = 0; ew = false      /* undefine + define extend */
       :: ATTWRITES(cpol) -> incr()
       :: ATTWRITES(epol) -> select(i : 0 .. N-1); if :: i < b -> e = e * 16 + roots[i]; ew = true :: else fi
       :: ATTWRITES(epol) -> e = e * 16; ew = true              /* extend with the genesis value */
       fi
  :: break
  od;

  /* start-up check (AuditLog.startUp, then reconcile) */
#if defined(FIXED) || defined(PINONLY)
#if defined(FIXED)
  if :: cpol != HSM || epol != HSM || !cw || !ew -> goto refused :: else fi;   /* pinned_nv_name_mismatch */
#else
  if :: cpol != OWNER || epol != OWNER || !cw || !ew -> goto refused :: else fi; /* pinned_nv_name_mismatch */
#endif
  if :: !meta -> goto refused :: else fi;                                      /* store_missing: start never creates a log */
  if :: g != G -> goto refused :: else fi;                                     /* store_genesis_mismatch */
  g = G;                                                                       /* the pin, never the store */
#else
  if :: !cw || !ew -> goto refused :: else fi;                                 /* names: attributes only */
  if :: !meta -> if :: e == 0 -> g = c; meta = true :: else -> goto refused fi /* old: a new log on a genesis-valued anchor */
     :: else fi;
#endif
  if
  :: c == g + b -> chain(b, ch); if :: ch != e -> goto refused :: else fi
  :: c + 1 == g + b ->                               /* store one batch ahead: finish it */
       chain(b, ch);
       if
       :: ch == e -> skip                          /* crash between extend and increment */
       :: else -> chain(b - 1, ch); if :: ch != e -> goto refused :: else fi; e = e * 16 + roots[b-1]
       fi;
       incr()
  :: else -> goto refused   /* store_behind_anchor, store_ahead_of_anchor, store_anchor_mismatch */
  fi;
  /* accepted: every acknowledged batch must be there, unchanged */
#ifdef REACH
  assert(acked < N);   /* reachability probe: fails when a run with every batch acknowledged is accepted */
#endif
#ifdef SHORTER
  assert(b >= acked);  /* no acknowledged batch cut off (a rollback to a shorter history) */
#else
  i = 0;
  do
  :: i < acked -> assert(i < b && roots[i] == i + 1); i++
  :: else -> break
  od;
#endif
refused: skip
}
