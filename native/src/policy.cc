// NV writes authorised by TPM2_PolicySigned (the audit anchor, docs/audit.md "Write policy").
// The signature over the TPM's nonce is made outside the TPM (by the HSM), so a batch of
// writes takes three calls, each a list in one worker:
// - PolicySessionsStart starts a policy session per write and returns each session and its
//   nonceTPM (the HSM signs each nonce with its write's cpHashA);
// - PolicySigned loads the signer's public key once, runs PolicySigned in each session with
//   its write's cpHashA (so each signature authorises that NV command with those parameters
//   only) and flushes the key (swtpm has 3 object slots);
// - NvPolicyWrites runs each NV_Extend or NV_Increment in its session, which the command
//   spends, in order, stopping at the first that fails; then, when asked, reads indices back
//   (the anchor's read-after-write).
// The first two change no NV index, so the audit log runs them while its store write is in
// flight; only the third waits for it. The sessions are the caller's once started: a call
// that fails leaves the sessions it was given as they are (the failed command's still
// loaded), and the caller ends each one no command spent with PolicySessionFlush.
//
// These commands go through SAPI (tss2-sys, the ESYS context's own), not ESYS: the session is
// unsalted and unbound and the write policy asks for no auth value, so no command needs an
// HMAC, the cpHash is the caller's, and ESYS would only add its own crypto (a fresh OpenSSL
// library context for every hash and nonce in tpm2-tss 3.2/4.x: ~13 ms of CPU per anchored
// batch, docs/grants.md "Why ESYS's crypto costs ~13 ms an anchor write"). Handles are TPM
// handles; nonces come from getrandom(2). Commands the TPM asks to resubmit (RETRY, YIELDED,
// TESTING) are resubmitted, as ESYS does.
#include <sys/random.h>
#include <tss2/tss2_sys.h>

#include "common.h"

namespace grantor {
namespace {

constexpr int kSubmissions = 5;

// Resubmits a command the TPM asked to try again, at most kSubmissions times in all.
template <typename F>
TSS2_RC Submit(F command) {
  TSS2_RC rc = TSS2_RC_SUCCESS;
  for (int i = 0; i < kSubmissions; i++) {
    rc = command();
    if (rc != TPM2_RC_RETRY && rc != TPM2_RC_YIELDED && rc != TPM2_RC_TESTING) break;
  }
  return rc;
}

TSS2_RC SysOf(ESYS_CONTEXT* esys, TSS2_SYS_CONTEXT** sys) { return Esys_GetSysContext(esys, sys); }

// A fresh caller nonce of the session hash's size, from the kernel's CSPRNG.
TSS2_RC FreshNonce(TPM2B_NONCE* nonce) {
  nonce->size = TPM2_SHA256_DIGEST_SIZE;
  ssize_t n = getrandom(nonce->buffer, nonce->size, 0);
  return n == nonce->size ? TSS2_RC_SUCCESS : TSS2_SYS_RC_GENERAL_FAILURE;
}

TSS2_RC SysFlush(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE handle) {
  return Submit([&] { return Tss2_Sys_FlushContext(sys, handle); });
}

// At most this many writes in one call (the anchor makes two; swtpm holds 3 sessions).
constexpr size_t kMaxWrites = 3;

bool BadCount(size_t n) { return n == 0 || n > kMaxWrites; }

class PolicySessionsStartWorker : public TpmWorker {
 public:
  PolicySessionsStartWorker(Napi::Env env, Context* ctx, uint32_t count)
      : TpmWorker(env, ctx, "StartAuthSession"), count_(count) {
    if (BadCount(count)) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TSS2_SYS_CONTEXT* sys = nullptr;
    TSS2_RC rc = SysOf(esys, &sys);
    for (uint32_t i = 0; rc == TSS2_RC_SUCCESS && i < count_; i++) rc = StartOne(sys);
    if (rc != TSS2_RC_SUCCESS && sys != nullptr) {
      // All or none (the caller never learns these handles): the sessions already started
      // would only hold the TPM's slots.
      for (TPMI_SH_AUTH_SESSION session : sessions_) SysFlush(sys, session);
      sessions_.clear();
      nonces_.clear();
    }
    return rc;
  }

  TSS2_RC StartOne(TSS2_SYS_CONTEXT* sys) {
    TPM2B_NONCE nonceCaller = {};
    TSS2_RC rc = FreshNonce(&nonceCaller);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_ENCRYPTED_SECRET salt = {};
    TPMT_SYM_DEF sym = {};
    sym.algorithm = TPM2_ALG_NULL;
    TPM2B_NONCE nonceTpm = {};
    TPMI_SH_AUTH_SESSION session = 0;
    rc = Submit([&] {
      return Tss2_Sys_StartAuthSession(sys, TPM2_RH_NULL, TPM2_RH_NULL, nullptr, &nonceCaller, &salt,
                                       TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &session, &nonceTpm, nullptr);
    });
    if (rc != TSS2_RC_SUCCESS) return rc;
    sessions_.push_back(session);
    nonces_.emplace_back(nonceTpm.buffer, nonceTpm.buffer + nonceTpm.size);
    return rc;
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, sessions_.size());
    for (size_t i = 0; i < sessions_.size(); i++) {
      out.Set(static_cast<uint32_t>(i), Fields(env, {{"nonceTpm", &nonces_[i]}}, {{"session", sessions_[i]}}));
    }
    return out;
  }

  uint32_t count_;
  std::vector<TPMI_SH_AUTH_SESSION> sessions_;
  std::vector<Bytes> nonces_;
};

// One PolicySigned per session, all with one loaded copy of the signer's public key.
class PolicySignedWorker : public TpmWorker {
 public:
  PolicySignedWorker(Napi::Env env, Context* ctx, const Bytes& keyPublic, const std::vector<uint32_t>& sessions,
                     const std::vector<Bytes>& nonces, const std::vector<Bytes>& signatures,
                     const std::vector<Bytes>& cpHashes)
      : TpmWorker(env, ctx, "PolicySigned"), sessions_(sessions.begin(), sessions.end()) {
    size_t n = sessions.size();
    if (BadCount(n) || nonces.size() != n || signatures.size() != n || cpHashes.size() != n) {
      Fail(TSS2_ESYS_RC_BAD_VALUE);
      return;
    }
    Fail(UnmarshalAll(Tss2_MU_TPM2B_PUBLIC_Unmarshal, keyPublic, &keyPublic_));
    nonces_.resize(n);
    signatures_.resize(n);
    cpHashes_.resize(n);
    for (size_t i = 0; i < n; i++) {
      Fail(FillTpm2b(nonces[i], &nonces_[i]));
      Fail(UnmarshalAll(Tss2_MU_TPMT_SIGNATURE_Unmarshal, signatures[i], &signatures_[i]));
      // cpHashA binds the signature to the one NV command (a SHA-256 digest, never empty).
      if (cpHashes[i].size() != 32) Fail(TSS2_ESYS_RC_BAD_VALUE);
      Fail(FillTpm2b(cpHashes[i], &cpHashes_[i]));
    }
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TSS2_SYS_CONTEXT* sys = nullptr;
    TSS2_RC rc = SysOf(esys, &sys);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2_HANDLE key = 0;
    TPM2B_NAME name = {};
    SetCommand("LoadExternal");
    rc = Submit([&] {
      return Tss2_Sys_LoadExternal(sys, nullptr, nullptr, &keyPublic_, TPM2_RH_NULL, &key, &name, nullptr);
    });
    if (rc != TSS2_RC_SUCCESS) return rc;
    SetCommand("PolicySigned");
    for (size_t i = 0; rc == TSS2_RC_SUCCESS && i < sessions_.size(); i++) {
      TPM2B_NONCE policyRef = {};
      TPM2B_TIMEOUT timeout = {};
      TPMT_TK_AUTH ticket = {};
      rc = Submit([&] {
        return Tss2_Sys_PolicySigned(sys, key, sessions_[i], nullptr, &nonces_[i], &cpHashes_[i], &policyRef, 0,
                                     &signatures_[i], &timeout, &ticket, nullptr);
      });
    }
    SysFlush(sys, key);
    return rc;
  }

  std::vector<TPMI_SH_AUTH_SESSION> sessions_;
  TPM2B_PUBLIC keyPublic_ = {};
  std::vector<TPM2B_NONCE> nonces_;
  std::vector<TPMT_SIGNATURE> signatures_;
  std::vector<TPM2B_DIGEST> cpHashes_;
};

class NvPolicyWritesWorker : public TpmWorker {
 public:
  enum class Kind : uint32_t { kIncrement = 0, kExtend = 1 };
  NvPolicyWritesWorker(Napi::Env env, Context* ctx, const std::vector<uint32_t>& sessions,
                       const std::vector<uint32_t>& kinds, std::vector<uint32_t> indices,
                       const std::vector<Bytes>& data, const std::vector<uint32_t>& readAfter)
      : TpmWorker(env, ctx, "NV_Extend"), sessions_(sessions.begin(), sessions.end()), indices_(std::move(indices)) {
    size_t n = sessions.size();
    if (BadCount(n) || kinds.size() != n || indices_.size() != n || data.size() != n) {
      Fail(TSS2_ESYS_RC_BAD_VALUE);
      return;
    }
    data_.resize(n);
    for (size_t i = 0; i < n; i++) {
      if (kinds[i] > 1) Fail(TSS2_ESYS_RC_BAD_VALUE);
      kinds_.push_back(static_cast<Kind>(kinds[i]));
      Fail(FillTpm2b(data[i], &data_[i]));
    }
    // [index, size, index, size, ...]: the indices to read back after the last write.
    if (readAfter.size() % 2 != 0) Fail(TSS2_ESYS_RC_BAD_VALUE);
    for (size_t i = 0; i + 1 < readAfter.size(); i += 2) {
      if (readAfter[i + 1] > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
      readAfter_.emplace_back(readAfter[i], static_cast<UINT16>(readAfter[i + 1]));
    }
  }

 private:
  static const char* CommandOf(Kind kind) { return kind == Kind::kIncrement ? "NV_Increment" : "NV_Extend"; }

  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TSS2_SYS_CONTEXT* sys = nullptr;
    TSS2_RC rc = SysOf(esys, &sys);
    if (rc != TSS2_RC_SUCCESS) return rc;
    landed_ = 0;
    while (rc == TSS2_RC_SUCCESS && landed_ < sessions_.size()) {
      SetCommand(CommandOf(kinds_[landed_]));
      rc = Update(sys, landed_);
      if (rc == TSS2_RC_SUCCESS) landed_++;
    }
    // A policy session is spent by one command: the NV command does not continue it, so the
    // TPM flushes it when the command succeeds. After a failure the failed command's session
    // is still loaded and the later ones unused: the caller flushes them (`landed` says
    // where they start).
    if (rc != TSS2_RC_SUCCESS) return rc;
    ReadBack(sys);
    return rc;
  }

  // The rejection says how many writes landed before the one that failed.
  void Annotate(Napi::Object error) override {
    error.Set("landed", Napi::Number::New(error.Env(), static_cast<double>(landed_)));
  }

  // NV_Read of each index asked for, by its own (empty) auth value in a password session, in
  // this same worker: the read-after-write without a round trip through the event loop. The
  // writes have happened whatever the reads do, so a failed read is not this call's failure:
  // it resolves with no reads (null) and the caller reads again on its own.
  void ReadBack(TSS2_SYS_CONTEXT* sys) {
    reads_.clear();
    readsOk_ = true;
    TSS2L_SYS_AUTH_COMMAND password = {};
    password.count = 1;
    password.auths[0].sessionHandle = TPM2_RS_PW;
    for (const auto& [index, size] : readAfter_) {
      TPM2B_MAX_NV_BUFFER read = {};
      TSS2L_SYS_AUTH_RESPONSE response = {};
      TSS2_RC rc = Submit([&, index = index, size = size] {
        return Tss2_Sys_NV_Read(sys, index, index, &password, size, 0, &read, &response);
      });
      reads_.emplace_back();
      if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal, &read, &reads_.back());
      if (rc == TSS2_RC_SUCCESS) continue;
      readsOk_ = false;
      return;
    }
  }

  Napi::Value Result(Napi::Env env) override {
    if (!readsOk_) return env.Null();
    Napi::Array out = Napi::Array::New(env, reads_.size());
    for (size_t i = 0; i < reads_.size(); i++) out.Set(static_cast<uint32_t>(i), ToBuffer(env, reads_[i]));
    return out;
  }

  TSS2_RC Update(TSS2_SYS_CONTEXT* sys, size_t i) {
    TPMI_RH_NV_INDEX index = indices_[i];
    TSS2L_SYS_AUTH_COMMAND auths = {};
    auths.count = 1;
    auths.auths[0].sessionHandle = sessions_[i];
    auths.auths[0].sessionAttributes = 0;  // continueSession clear: spent by this command
    TSS2L_SYS_AUTH_RESPONSE response = {};
    return Submit([&] {
      // A fresh caller nonce for every submission; no HMAC (the policy asks for no auth value).
      TSS2_RC rc = FreshNonce(&auths.auths[0].nonce);
      if (rc != TSS2_RC_SUCCESS) return rc;
      if (kinds_[i] == Kind::kIncrement) return Tss2_Sys_NV_Increment(sys, index, index, &auths, &response);
      return Tss2_Sys_NV_Extend(sys, index, index, &auths, &data_[i], &response);
    });
  }

  std::vector<TPMI_SH_AUTH_SESSION> sessions_;
  std::vector<uint32_t> indices_;
  std::vector<Kind> kinds_;
  std::vector<TPM2B_MAX_NV_BUFFER> data_;
  std::vector<std::pair<uint32_t, UINT16>> readAfter_;
  size_t landed_ = 0;
  std::vector<Bytes> reads_;
  bool readsOk_ = true;
};

}  // namespace

void RegisterPolicy(Napi::Env env, Napi::Object exports) {
  // policySessionsStart(ctx, count: 1..3) -> [{session: TPM handle, nonceTpm: Buffer}, ...]
  Export(env, exports, "policySessionsStart", [](const Napi::CallbackInfo& info) {
    return StartWorker<PolicySessionsStartWorker>(info, U32Arg(info, 1, "count"));
  });
  // policySessionFlush(ctx, session: TPM handle)
  Export(env, exports, "policySessionFlush", [](const Napi::CallbackInfo& info) {
    TPM2_HANDLE session = U32Arg(info, 1, "session");
    return Call(info, "FlushContext", {}, [session](ESYS_CONTEXT* esys, Bytes*) {
      TSS2_SYS_CONTEXT* sys = nullptr;
      TSS2_RC rc = SysOf(esys, &sys);
      return rc == TSS2_RC_SUCCESS ? SysFlush(sys, session) : rc;
    });
  });
  // policySigned(ctx, keyPublic: TPM2B_PUBLIC, sessions: TPM handle[], nonces: Buffer[] (each
  //              session's nonceTPM, as started), signatures: TPMT_SIGNATURE[],
  //              cpHashes: Buffer[] (32 bytes each))
  //   -> undefined; the sessions are left as they are whatever happens (the caller's)
  Export(env, exports, "policySigned", [](const Napi::CallbackInfo& info) {
    return StartWorker<PolicySignedWorker>(info, BytesArg(info, 1, "keyPublic"), U32ListArg(info, 2, "sessions"),
                                           BytesListArg(info, 3, "nonces"), BytesListArg(info, 4, "signatures"),
                                           BytesListArg(info, 5, "cpHashes"));
  });
  // nvPolicyWrites(ctx, sessions: TPM handle[], kinds: (0 increment, 1 extend)[], indices: number[],
  //                data: Buffer[], readAfter: number[] ([index, size, ...]))
  //   -> TPM2B_MAX_NV_BUFFER[] (one per index read back), or null when a read failed; a failed
  //      write rejects with `command` (the write's) and `landed` (the writes before it): the
  //      sessions from `landed` on are not spent, and the caller flushes them
  Export(env, exports, "nvPolicyWrites", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvPolicyWritesWorker>(info, U32ListArg(info, 1, "sessions"), U32ListArg(info, 2, "kinds"),
                                             U32ListArg(info, 3, "indices"), BytesListArg(info, 4, "data"),
                                             U32ListArg(info, 5, "readAfter"));
  });
  // hierarchyChangeAuth(ctx, hierarchy, auth, newAuth: Uint8Array)
  Export(env, exports, "hierarchyChangeAuth", [](const Napi::CallbackInfo& info) {
    AuthHandle hierarchy = AuthHandleArg(info, 1, "hierarchy", "auth");
    Secret newAuth = SecretArg(info, 3, "newAuth");
    auto run = [hierarchy = std::move(hierarchy), newAuth = std::move(newAuth)](ESYS_CONTEXT* esys, Bytes*) {
      TPM2B_AUTH auth = {};
      HandleScope scope(esys);
      Authorized hier;
      TSS2_RC rc = FillTpm2b(newAuth.bytes, &auth);
      if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(hierarchy, &hier);
      if (rc == TSS2_RC_SUCCESS) {
        rc = Esys_HierarchyChangeAuth(esys, hier.tr, hier.session, ESYS_TR_NONE, ESYS_TR_NONE, &auth);
      }
      WipeTpm2b(&auth);
      return rc;
    };
    return Call(info, "HierarchyChangeAuth", {}, std::move(run));
  });
}

}  // namespace grantor
