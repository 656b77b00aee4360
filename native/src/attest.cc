// Signed attestations: Quote, Certify, NV_Certify. Each resolves with
// {attest: TPM2B_ATTEST, signature: TPMT_SIGNATURE}.
#include "common.h"

namespace grantor {
namespace {

// What a signing command gets: its scheme (TPMT_SIG_SCHEME; TPM2_ALG_NULL uses the key's
// own) and qualifying data, and where the TPM's answer goes.
struct Signing {
  const TPMT_SIG_SCHEME* scheme;
  const TPM2B_DATA* qualifying;
  TPM2B_ATTEST** attest;
  TPMT_SIGNATURE** sig;
};

// What every signing command shares: the signing key (resolved and authorised first), the
// scheme and qualifying data (arguments `schemeArg` and the next), and the marshalled answer.
// sign(esys, scope, key, signing) sends the one command.
template <typename F>
Napi::Value CallSigning(const Napi::CallbackInfo& info, const char* command, AuthHandle signKey, size_t schemeArg,
                        F sign) {
  Bytes scheme = BytesArg(info, schemeArg, "scheme");
  Bytes qualifying = BytesArg(info, schemeArg + 1, "qualifyingData");
  auto run = [signKey = std::move(signKey), scheme, qualifying, sign = std::move(sign)](ESYS_CONTEXT* esys,
                                                                                         Bytes* out) {
    TPMT_SIG_SCHEME inScheme = {};
    TPM2B_DATA inQualifying = {};
    HandleScope scope(esys);
    Authorized key;
    TPM2B_ATTEST* attest = nullptr;
    TPMT_SIGNATURE* sig = nullptr;
    TSS2_RC rc = UnmarshalAll(Tss2_MU_TPMT_SIG_SCHEME_Unmarshal, scheme, &inScheme);
    if (rc == TSS2_RC_SUCCESS) rc = FillTpm2b(qualifying, &inQualifying);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(signKey, &key);
    if (rc == TSS2_RC_SUCCESS) rc = sign(esys, &scope, key, Signing{&inScheme, &inQualifying, &attest, &sig});
    rc = Keep(rc, Tss2_MU_TPM2B_ATTEST_Marshal, attest, &out[0]);
    return Keep(rc, Tss2_MU_TPMT_SIGNATURE_Marshal, sig, &out[1]);
  };
  return Call(info, command, {"attest", "signature"}, std::move(run));
}

}  // namespace

void RegisterAttest(Napi::Env env, Napi::Object exports) {
  // quote(ctx, signKey, signAuth, TPMT_SIG_SCHEME, qualifyingData, TPML_PCR_SELECTION)
  Export(env, exports, "quote", [](const Napi::CallbackInfo& info) {
    Bytes selection = BytesArg(info, 5, "selection");
    auto sign = [selection](ESYS_CONTEXT* esys, HandleScope*, const Authorized& key, const Signing& s) {
      TPML_PCR_SELECTION pcrs = {};
      TSS2_RC rc = UnmarshalAll(Tss2_MU_TPML_PCR_SELECTION_Unmarshal, selection, &pcrs);
      if (rc != TSS2_RC_SUCCESS) return rc;
      return Esys_Quote(esys, key.tr, key.session, ESYS_TR_NONE, ESYS_TR_NONE, s.qualifying, s.scheme, &pcrs,
                        s.attest, s.sig);
    };
    return CallSigning(info, "Quote", AuthHandleArg(info, 1, "signKey", "signAuth"), 3, std::move(sign));
  });
  // certify(ctx, object, objectAuth, signKey, signAuth, TPMT_SIG_SCHEME, qualifyingData)
  Export(env, exports, "certify", [](const Napi::CallbackInfo& info) {
    AuthHandle object = AuthHandleArg(info, 1, "object", "objectAuth");
    auto sign = [object = std::move(object)](ESYS_CONTEXT* esys, HandleScope* scope, const Authorized& key,
                                             const Signing& s) {
      Authorized obj;
      TSS2_RC rc = scope->Authorize(object, &obj);
      if (rc != TSS2_RC_SUCCESS) return rc;
      return Esys_Certify(esys, obj.tr, key.tr, obj.session, key.session, ESYS_TR_NONE, s.qualifying, s.scheme,
                          s.attest, s.sig);
    };
    return CallSigning(info, "Certify", AuthHandleArg(info, 3, "signKey", "signAuth"), 5, std::move(sign));
  });
  // nvCertify(ctx, signKey, signAuth, authHandle, auth, index, TPMT_SIG_SCHEME, qualifyingData,
  //           size, offset)
  Export(env, exports, "nvCertify", [](const Napi::CallbackInfo& info) {
    AuthHandle authHandle = AuthHandleArg(info, 3, "authHandle", "auth");
    uint32_t index = U32Arg(info, 5, "index");
    uint32_t size = U32Arg(info, 8, "size");
    uint32_t offset = U32Arg(info, 9, "offset");
    auto sign = [authHandle = std::move(authHandle), index, size, offset](
                    ESYS_CONTEXT* esys, HandleScope* scope, const Authorized& key, const Signing& s) {
      Authorized auth;
      ESYS_TR nv = ESYS_TR_NONE;
      if (size > 0xffff || offset > 0xffff) return static_cast<TSS2_RC>(TSS2_ESYS_RC_BAD_VALUE);
      TSS2_RC rc = scope->AuthorizeOn(authHandle, index, &auth, &nv);
      if (rc != TSS2_RC_SUCCESS) return rc;
      return Esys_NV_Certify(esys, key.tr, auth.tr, nv, key.session, auth.session, ESYS_TR_NONE, s.qualifying,
                             s.scheme, static_cast<UINT16>(size), static_cast<UINT16>(offset), s.attest, s.sig);
    };
    return CallSigning(info, "NV_Certify", AuthHandleArg(info, 1, "signKey", "signAuth"), 6, std::move(sign));
  });
}

}  // namespace grantor
