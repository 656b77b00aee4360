// ActivateCredential: the EK (keyHandle) is authorised with the EK policy session, the
// credentialed key (activateHandle, e.g. the AK) with its auth value.
#include "common.h"

namespace grantor {

void RegisterCredential(Napi::Env env, Napi::Object exports) {
  // activateCredential(ctx, activateHandle, activateAuth, keyHandle, keyAuth, TPM2B_ID_OBJECT,
  //                    TPM2B_ENCRYPTED_SECRET) -> TPM2B_DIGEST
  Export(env, exports, "activateCredential", [](const Napi::CallbackInfo& info) {
    AuthHandle activate = AuthHandleArg(info, 1, "activateHandle", "activateAuth");
    AuthHandle key = AuthHandleArg(info, 3, "keyHandle", "keyAuth");
    Bytes blob = BytesArg(info, 5, "credentialBlob");
    Bytes secret = BytesArg(info, 6, "secret");
    auto run = [activate = std::move(activate), key = std::move(key), blob, secret](ESYS_CONTEXT* esys, Bytes* out) {
      TPM2B_ID_OBJECT idObject = {};
      TPM2B_ENCRYPTED_SECRET encrypted = {};
      HandleScope scope(esys);
      Authorized act;
      Authorized ek;
      TSS2_RC rc = UnmarshalAll(Tss2_MU_TPM2B_ID_OBJECT_Unmarshal, blob, &idObject);
      if (rc == TSS2_RC_SUCCESS) rc = UnmarshalAll(Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal, secret, &encrypted);
      if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(activate, &act);
      if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(key, &ek);
      if (rc != TSS2_RC_SUCCESS) return rc;
      TPM2B_DIGEST* certInfo = nullptr;
      rc = Esys_ActivateCredential(esys, act.tr, ek.tr, act.session, ek.session, ESYS_TR_NONE, &idObject, &encrypted,
                                   &certInfo);
      if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_DIGEST_Marshal, certInfo, out);
      if (certInfo != nullptr) WipeTpm2b(certInfo);
      Esys_Free(certInfo);
      return rc;
    };
    return Call(info, "ActivateCredential", {nullptr}, std::move(run));
  });
}

}  // namespace grantor
