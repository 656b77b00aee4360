// NV writes authorised by TPM2_PolicySigned (the audit anchor, docs/audit.md "Write policy").
// The signature over the TPM's nonce is made outside the TPM (by the HSM), so one write
// takes two calls: PolicySessionStart returns the session and its nonceTPM; then
// NvPolicySignedUpdate loads the signer's public key, runs PolicySigned with the command's
// cpHashA (so the signature authorises that NV command with those parameters only), flushes the key
// (swtpm has 3 object slots) and runs NV_Increment or NV_Extend in that session, which it
// always flushes; then, when asked, reads indices back (the anchor's read-after-write) in
// the same worker. PolicySessionFlush ends a session whose signature never came.
#include "common.h"

namespace grantor {
namespace {

class PolicySessionStartWorker : public TpmWorker {
 public:
  PolicySessionStartWorker(Napi::Env env, Context* ctx) : TpmWorker(env, ctx, "StartAuthSession") {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TSS2_RC rc = StartPolicySession(esys, TPM2_ALG_SHA256, &session_);
    if (rc != TSS2_RC_SUCCESS) return rc;
    // Kept after the NV command so that NvPolicySignedUpdate flushes it in every case.
    rc = Esys_TRSess_SetAttributes(esys, session_, TPMA_SESSION_CONTINUESESSION, 0xff);
    TPM2B_NONCE* nonce = nullptr;
    if (rc == TSS2_RC_SUCCESS) rc = Esys_TRSess_GetNonceTPM(esys, session_, &nonce);
    if (rc == TSS2_RC_SUCCESS) nonce_.assign(nonce->buffer, nonce->buffer + nonce->size);
    Esys_Free(nonce);
    if (rc != TSS2_RC_SUCCESS) FlushOrClose(esys, &session_);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return Fields(env, {{"nonceTpm", &nonce_}}, {{"session", session_}}); }
  ESYS_TR session_ = ESYS_TR_NONE;
  Bytes nonce_;
};

class NvPolicySignedUpdateWorker : public TpmWorker {
 public:
  enum class Kind : uint32_t { kIncrement = 0, kExtend = 1 };
  NvPolicySignedUpdateWorker(Napi::Env env, Context* ctx, uint32_t session, uint32_t kind, uint32_t index,
                             const Bytes& data, const Bytes& keyPublic, const Bytes& signature,
                             const Bytes& cpHash, const std::vector<uint32_t>& readAfter)
      : TpmWorker(env, ctx, kind == 0 ? "NV_Increment" : "NV_Extend"),
        session_(session),
        kind_(static_cast<Kind>(kind)),
        index_(index) {
    if (kind > 1) Fail(TSS2_ESYS_RC_BAD_VALUE);
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
    TSS2_RC rc = Authorize(esys);
    if (rc == TSS2_RC_SUCCESS) rc = Update(esys);
    // A policy session is spent by one command (and useless after a failed one).
    FlushOrClose(esys, &session_);
    if (rc == TSS2_RC_SUCCESS) ReadBack(esys);
    return rc;
  }

  // NV_Read of each index asked for, by its own (empty) auth value, in this same worker: the
  // read-after-write without a round trip through the event loop. The write has happened
  // whatever the reads do, so a failed read is not this command's failure: it resolves
  // with no reads (null) and the caller reads again on its own.
  void ReadBack(ESYS_CONTEXT* esys) {
    reads_.clear();
    readsOk_ = true;
    for (const auto& [index, size] : readAfter_) {
      HandleScope scope(esys);
      Authorized self;
      ESYS_TR nv = ESYS_TR_NONE;
      TSS2_RC rc = scope.AuthorizeOn(AuthHandle{index, Auth()}, index, &self, &nv);
      TPM2B_MAX_NV_BUFFER* read = nullptr;
      if (rc == TSS2_RC_SUCCESS) {
        rc = Esys_NV_Read(esys, self.tr, nv, self.session, ESYS_TR_NONE, ESYS_TR_NONE, size, 0, &read);
      }
      reads_.emplace_back();
      rc = Keep(rc, Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal, read, &reads_.back());
      if (rc == TSS2_RC_SUCCESS) continue;
      readsOk_ = false;
      ForgetNvHandles();
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
  TSS2_RC Authorize(ESYS_CONTEXT* esys) {
    ESYS_TR key = ESYS_TR_NONE;
    TSS2_RC rc = Esys_LoadExternal(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr, &keyPublic_,
                                   ESYS_TR_RH_NULL, &key);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_NONCE* nonce = nullptr;
    rc = Esys_TRSess_GetNonceTPM(esys, session_, &nonce);
    if (rc == TSS2_RC_SUCCESS) {
      TPM2B_NONCE policyRef = {};
      TPM2B_TIMEOUT* timeout = nullptr;
      TPMT_TK_AUTH* ticket = nullptr;
      rc = Esys_PolicySigned(esys, key, session_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nonce, &cpHash_,
                             &policyRef, 0, &signature_, &timeout, &ticket);
      Esys_Free(timeout);
      Esys_Free(ticket);
    }
    Esys_Free(nonce);
    FlushOrClose(esys, &key);
    return rc;
  }

  TSS2_RC Update(ESYS_CONTEXT* esys) {
    HandleScope scope(esys);
    ESYS_TR nv = ESYS_TR_NONE;
    TSS2_RC rc = scope.Resolve(index_, &nv);
    if (rc != TSS2_RC_SUCCESS) return rc;
    if (kind_ == Kind::kIncrement) return Esys_NV_Increment(esys, nv, nv, session_, ESYS_TR_NONE, ESYS_TR_NONE);
    return Esys_NV_Extend(esys, nv, nv, session_, ESYS_TR_NONE, ESYS_TR_NONE, &data_);
  }

  ESYS_TR session_;
  Kind kind_;
  uint32_t index_;
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
  // policySessionStart(ctx) -> {session: ESYS_TR, nonceTpm: Buffer}
  Export(env, exports, "policySessionStart",
         [](const Napi::CallbackInfo& info) { return StartWorker<PolicySessionStartWorker>(info); });
  // policySessionFlush(ctx, session)
  Export(env, exports, "policySessionFlush", [](const Napi::CallbackInfo& info) {
    ESYS_TR session = U32Arg(info, 1, "session");
    return Call(info, "FlushContext", {},
                [session](ESYS_CONTEXT* esys, Bytes*) mutable { return FlushOrClose(esys, &session); });
  });
  // nvPolicySignedUpdate(ctx, session, kind (0 increment, 1 extend), index, data,
  //                      keyPublic: TPM2B_PUBLIC, signature: TPMT_SIGNATURE, cpHash: 32 bytes,
  //                      readAfter: number[] ([index, size, ...]))
  //   -> TPM2B_MAX_NV_BUFFER[] (one per index read back), or null when a read failed
  Export(env, exports, "nvPolicySignedUpdate", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvPolicySignedUpdateWorker>(info, U32Arg(info, 1, "session"), U32Arg(info, 2, "kind"),
                                                   U32Arg(info, 3, "index"), BytesArg(info, 4, "data"),
                                                   BytesArg(info, 5, "keyPublic"), BytesArg(info, 6, "signature"),
                                                   BytesArg(info, 7, "cpHash"), U32ListArg(info, 8, "readAfter"));
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
