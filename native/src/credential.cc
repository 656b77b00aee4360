// ActivateCredential: the EK (keyHandle) is authorised with the EK policy session, the
// credentialed key (activateHandle, e.g. the AK) with its auth value.
#include "common.h"

namespace grantor {
namespace {

class ActivateCredentialWorker : public TpmWorker {
 public:
  ActivateCredentialWorker(Napi::Env env, Context* ctx, uint32_t activate, Auth activateAuth, uint32_t key,
                           Auth keyAuth, const Bytes& blob, const Bytes& secret)
      : TpmWorker(env, ctx, "ActivateCredential"),
        activate_(activate),
        activateAuth_(std::move(activateAuth)),
        key_(key),
        keyAuth_(std::move(keyAuth)) {
    Fail(UnmarshalAll(Tss2_MU_TPM2B_ID_OBJECT_Unmarshal, blob, &blob_));
    Fail(UnmarshalAll(Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal, secret, &secret_));
  }
  ~ActivateCredentialWorker() override { Wipe(&certInfo_); }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR activate = ESYS_TR_NONE;
    ESYS_TR key = ESYS_TR_NONE;
    ESYS_TR activateSession = ESYS_TR_NONE;
    ESYS_TR keySession = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorized(activate_, activateAuth_, &activate, &activateSession);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Authorized(key_, keyAuth_, &key, &keySession);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_DIGEST* certInfo = nullptr;
    rc = Esys_ActivateCredential(esys, activate, key, activateSession, keySession, ESYS_TR_NONE, &blob_, &secret_,
                                 &certInfo);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_DIGEST_Marshal, certInfo, &certInfo_);
    if (certInfo != nullptr) WipeTpm2b(certInfo);
    Esys_Free(certInfo);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return ToBuffer(env, certInfo_); }

  uint32_t activate_;
  Auth activateAuth_;
  uint32_t key_;
  Auth keyAuth_;
  TPM2B_ID_OBJECT blob_ = {};
  TPM2B_ENCRYPTED_SECRET secret_ = {};
  Bytes certInfo_;
};

}  // namespace

void RegisterCredential(Napi::Env env, Napi::Object exports) {
  // activateCredential(ctx, activateHandle, activateAuth, keyHandle, keyAuth, TPM2B_ID_OBJECT,
  //                    TPM2B_ENCRYPTED_SECRET) -> TPM2B_DIGEST
  Export(env, exports, "activateCredential", [](const Napi::CallbackInfo& info) {
    return StartWorker<ActivateCredentialWorker>(info, U32Arg(info, 1, "activateHandle"),
                                                 AuthArg(info, 2, "activateAuth"), U32Arg(info, 3, "keyHandle"),
                                                 AuthArg(info, 4, "keyAuth"), BytesArg(info, 5, "credentialBlob"),
                                                 BytesArg(info, 6, "secret"));
  });
}

}  // namespace grantor
