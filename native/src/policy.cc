// NV writes authorised by TPM2_PolicySigned (the audit anchor, docs/audit.md "Write policy").
// The signature over the TPM's nonce is made outside the TPM (by the HSM), so one write
// takes two calls: PolicySessionStart returns the session and its nonceTPM; then
// NvPolicySignedUpdate loads the signer's public key, runs PolicySigned with the command's
// cpHashA (so the signature authorises that NV command with those parameters only), flushes the key
// (swtpm has 3 object slots) and runs NV_Increment or NV_Extend in that session, which the
// command spends (or, when it fails, the worker flushes); then, when asked, reads indices back (the anchor's read-after-write) in
// the same worker. PolicySessionFlush ends a session whose signature never came.
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

class PolicySessionStartWorker : public TpmWorker {
 public:
  PolicySessionStartWorker(Napi::Env env, Context* ctx) : TpmWorker(env, ctx, "StartAuthSession") {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TSS2_SYS_CONTEXT* sys = nullptr;
    TPM2B_NONCE nonceCaller = {};
    TSS2_RC rc = SysOf(esys, &sys);
    if (rc == TSS2_RC_SUCCESS) rc = FreshNonce(&nonceCaller);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_ENCRYPTED_SECRET salt = {};
    TPMT_SYM_DEF sym = {};
    sym.algorithm = TPM2_ALG_NULL;
    TPM2B_NONCE nonceTpm = {};
    rc = Submit([&] {
      return Tss2_Sys_StartAuthSession(sys, TPM2_RH_NULL, TPM2_RH_NULL, nullptr, &nonceCaller, &salt,
                                       TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &session_, &nonceTpm, nullptr);
    });
    if (rc == TSS2_RC_SUCCESS) nonce_.assign(nonceTpm.buffer, nonceTpm.buffer + nonceTpm.size);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return Fields(env, {{"nonceTpm", &nonce_}}, {{"session", session_}}); }
  TPMI_SH_AUTH_SESSION session_ = 0;
  Bytes nonce_;
};

class NvPolicySignedUpdateWorker : public TpmWorker {
 public:
  enum class Kind : uint32_t { kIncrement = 0, kExtend = 1 };
  NvPolicySignedUpdateWorker(Napi::Env env, Context* ctx, uint32_t session, const Bytes& nonceTpm, uint32_t kind,
                             uint32_t index, const Bytes& data, const Bytes& keyPublic, const Bytes& signature,
                             const Bytes& cpHash, const std::vector<uint32_t>& readAfter)
      : TpmWorker(env, ctx, kind == 0 ? "NV_Increment" : "NV_Extend"),
        session_(session),
        kind_(static_cast<Kind>(kind)),
        index_(index) {
    if (kind > 1) Fail(TSS2_ESYS_RC_BAD_VALUE);
    Fail(FillTpm2b(nonceTpm, &nonceTpm_));
    Fail(FillTpm2b(data, &data_));
    Fail(UnmarshalAll(Tss2_MU_TPM2B_PUBLIC_Unmarshal, keyPublic, &keyPublic_));
    Fail(UnmarshalAll(Tss2_MU_TPMT_SIGNATURE_Unmarshal, signature, &signature_));
    // cpHashA binds the signature to the one NV command (a SHA-256 digest, never empty).
    if (cpHash.size() != 32) Fail(TSS2_ESYS_RC_BAD_VALUE);
    Fail(FillTpm2b(cpHash, &cpHash_));
    // [index, size, index, size, ...]: the indices to read back after the write.
    if (readAfter.size() % 2 != 0) Fail(TSS2_ESYS_RC_BAD_VALUE);
    for (size_t i = 0; i + 1 < readAfter.size(); i += 2) {
      if (readAfter[i + 1] > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
      readAfter_.emplace_back(readAfter[i], static_cast<UINT16>(readAfter[i + 1]));
    }
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TSS2_SYS_CONTEXT* sys = nullptr;
    TSS2_RC rc = SysOf(esys, &sys);
    if (rc != TSS2_RC_SUCCESS) return rc;
    rc = Authorize(sys);
    if (rc == TSS2_RC_SUCCESS) rc = Update(sys);
    // A policy session is spent by one command: the NV command does not continue it, so the
    // TPM flushes it when the command succeeds; after a failure (of PolicySigned or of the
    // command) it is still loaded and flushed here.
    if (rc != TSS2_RC_SUCCESS) SysFlush(sys, session_);
    if (rc == TSS2_RC_SUCCESS) ReadBack(sys);
    return rc;
  }

  // NV_Read of each index asked for, by its own (empty) auth value in a password session, in
  // this same worker: the read-after-write without a round trip through the event loop. The
  // write has happened whatever the reads do, so a failed read is not this command's
  // failure: it resolves with no reads (null) and the caller reads again on its own.
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

  // LoadExternal (public part only, null hierarchy), PolicySigned, FlushContext.
  TSS2_RC Authorize(TSS2_SYS_CONTEXT* sys) {
    TPM2_HANDLE key = 0;
    TPM2B_NAME name = {};
    TSS2_RC rc = Submit([&] {
      return Tss2_Sys_LoadExternal(sys, nullptr, nullptr, &keyPublic_, TPM2_RH_NULL, &key, &name, nullptr);
    });
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_NONCE policyRef = {};
    TPM2B_TIMEOUT timeout = {};
    TPMT_TK_AUTH ticket = {};
    rc = Submit([&] {
      return Tss2_Sys_PolicySigned(sys, key, session_, nullptr, &nonceTpm_, &cpHash_, &policyRef, 0, &signature_,
                                   &timeout, &ticket, nullptr);
    });
    SysFlush(sys, key);
    return rc;
  }

  TSS2_RC Update(TSS2_SYS_CONTEXT* sys) {
    TSS2L_SYS_AUTH_COMMAND auths = {};
    auths.count = 1;
    auths.auths[0].sessionHandle = session_;
    auths.auths[0].sessionAttributes = 0;  // continueSession clear: spent by this command
    TSS2L_SYS_AUTH_RESPONSE response = {};
    return Submit([&] {
      // A fresh caller nonce for every submission; no HMAC (the policy asks for no auth value).
      TSS2_RC rc = FreshNonce(&auths.auths[0].nonce);
      if (rc != TSS2_RC_SUCCESS) return rc;
      if (kind_ == Kind::kIncrement) return Tss2_Sys_NV_Increment(sys, index_, index_, &auths, &response);
      return Tss2_Sys_NV_Extend(sys, index_, index_, &auths, &data_, &response);
    });
  }

  TPMI_SH_AUTH_SESSION session_;
  Kind kind_;
  uint32_t index_;
  TPM2B_NONCE nonceTpm_ = {};
  TPM2B_MAX_NV_BUFFER data_ = {};
  TPM2B_PUBLIC keyPublic_ = {};
  TPMT_SIGNATURE signature_ = {};
  TPM2B_DIGEST cpHash_ = {};
  std::vector<std::pair<uint32_t, UINT16>> readAfter_;
  std::vector<Bytes> reads_;
  bool readsOk_ = true;
};

}  // namespace

void RegisterPolicy(Napi::Env env, Napi::Object exports) {
  // policySessionStart(ctx) -> {session: TPM handle, nonceTpm: Buffer}
  Export(env, exports, "policySessionStart",
         [](const Napi::CallbackInfo& info) { return StartWorker<PolicySessionStartWorker>(info); });
  // policySessionFlush(ctx, session: TPM handle)
  Export(env, exports, "policySessionFlush", [](const Napi::CallbackInfo& info) {
    TPM2_HANDLE session = U32Arg(info, 1, "session");
    return Call(info, "FlushContext", {}, [session](ESYS_CONTEXT* esys, Bytes*) {
      TSS2_SYS_CONTEXT* sys = nullptr;
      TSS2_RC rc = SysOf(esys, &sys);
      return rc == TSS2_RC_SUCCESS ? SysFlush(sys, session) : rc;
    });
  });
  // nvPolicySignedUpdate(ctx, session: TPM handle, nonceTpm (the session's, as started),
  //                      kind (0 increment, 1 extend), index, data,
  //                      keyPublic: TPM2B_PUBLIC, signature: TPMT_SIGNATURE, cpHash: 32 bytes,
  //                      readAfter: number[] ([index, size, ...]))
  //   -> TPM2B_MAX_NV_BUFFER[] (one per index read back), or null when a read failed
  Export(env, exports, "nvPolicySignedUpdate", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvPolicySignedUpdateWorker>(
        info, U32Arg(info, 1, "session"), BytesArg(info, 2, "nonceTpm"), U32Arg(info, 3, "kind"),
        U32Arg(info, 4, "index"), BytesArg(info, 5, "data"), BytesArg(info, 6, "keyPublic"),
        BytesArg(info, 7, "signature"), BytesArg(info, 8, "cpHash"), U32ListArg(info, 9, "readAfter"));
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
