// Signed attestations: Quote, Certify, NV_Certify. Each resolves with
// {attest: TPM2B_ATTEST, signature: TPMT_SIGNATURE}.
#include "common.h"

namespace grantor {
namespace {

// The inputs every signing command shares: the signing key, its auth, the scheme
// (TPMT_SIG_SCHEME; TPM2_ALG_NULL uses the key's own) and the qualifying data.
class SigningWorker : public TpmWorker {
 protected:
  SigningWorker(Napi::Env env, Context* ctx, const char* command, uint32_t signKey, Auth signAuth,
                const Bytes& scheme, const Bytes& qualifying)
      : TpmWorker(env, ctx, command), signKey_(signKey), signAuth_(std::move(signAuth)) {
    Fail(UnmarshalAll(Tss2_MU_TPMT_SIG_SCHEME_Unmarshal, scheme, &scheme_));
    Fail(FillTpm2b(qualifying, &qualifying_));
  }
  TSS2_RC Signed(TPM2B_ATTEST* attest, TPMT_SIGNATURE* sig, TSS2_RC rc) {
    rc = Keep(rc, Tss2_MU_TPM2B_ATTEST_Marshal, attest, &attest_);
    return Keep(rc, Tss2_MU_TPMT_SIGNATURE_Marshal, sig, &signature_);
  }
  Napi::Value Result(Napi::Env env) override { return Fields(env, {{"attest", &attest_}, {"signature", &signature_}}); }

  uint32_t signKey_;
  Auth signAuth_;
  TPMT_SIG_SCHEME scheme_ = {};
  TPM2B_DATA qualifying_ = {};
  Bytes attest_;
  Bytes signature_;
};

class QuoteWorker : public SigningWorker {
 public:
  QuoteWorker(Napi::Env env, Context* ctx, uint32_t signKey, Auth signAuth, const Bytes& scheme,
              const Bytes& qualifying, const Bytes& selection)
      : SigningWorker(env, ctx, "Quote", signKey, std::move(signAuth), scheme, qualifying) {
    Fail(UnmarshalAll(Tss2_MU_TPML_PCR_SELECTION_Unmarshal, selection, &selection_));
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR key = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorized(signKey_, signAuth_, &key, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_ATTEST* attest = nullptr;
    TPMT_SIGNATURE* sig = nullptr;
    rc = Esys_Quote(esys, key, session, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying_, &scheme_, &selection_, &attest,
                    &sig);
    return Signed(attest, sig, rc);
  }
  TPML_PCR_SELECTION selection_ = {};
};

class CertifyWorker : public SigningWorker {
 public:
  CertifyWorker(Napi::Env env, Context* ctx, uint32_t object, Auth objectAuth, uint32_t signKey, Auth signAuth,
                const Bytes& scheme, const Bytes& qualifying)
      : SigningWorker(env, ctx, "Certify", signKey, std::move(signAuth), scheme, qualifying),
        object_(object),
        objectAuth_(std::move(objectAuth)) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR obj = ESYS_TR_NONE;
    ESYS_TR key = ESYS_TR_NONE;
    ESYS_TR objSession = ESYS_TR_NONE;
    ESYS_TR keySession = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorized(object_, objectAuth_, &obj, &objSession);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Authorized(signKey_, signAuth_, &key, &keySession);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_ATTEST* attest = nullptr;
    TPMT_SIGNATURE* sig = nullptr;
    rc = Esys_Certify(esys, obj, key, objSession, keySession, ESYS_TR_NONE, &qualifying_, &scheme_, &attest, &sig);
    return Signed(attest, sig, rc);
  }
  uint32_t object_;
  Auth objectAuth_;
};

class NvCertifyWorker : public SigningWorker {
 public:
  NvCertifyWorker(Napi::Env env, Context* ctx, uint32_t signKey, Auth signAuth, uint32_t authHandle, Auth auth,
                  uint32_t index, const Bytes& scheme, const Bytes& qualifying, uint32_t size, uint32_t offset)
      : SigningWorker(env, ctx, "NV_Certify", signKey, std::move(signAuth), scheme, qualifying),
        authHandle_(authHandle),
        auth_(std::move(auth)),
        index_(index),
        size_(size),
        offset_(offset) {
    if (size > 0xffff || offset > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR key = ESYS_TR_NONE;
    ESYS_TR index = ESYS_TR_NONE;
    ESYS_TR authTr = ESYS_TR_NONE;
    ESYS_TR keySession = ESYS_TR_NONE;
    ESYS_TR authSession = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorized(signKey_, signAuth_, &key, &keySession);
    if (rc == TSS2_RC_SUCCESS) rc = scope.AuthorizedNv(authHandle_, auth_, index_, &authTr, &index, &authSession);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_ATTEST* attest = nullptr;
    TPMT_SIGNATURE* sig = nullptr;
    rc = Esys_NV_Certify(esys, key, authTr, index, keySession, authSession, ESYS_TR_NONE, &qualifying_, &scheme_,
                         static_cast<UINT16>(size_), static_cast<UINT16>(offset_), &attest, &sig);
    return Signed(attest, sig, rc);
  }
  uint32_t authHandle_;
  Auth auth_;
  uint32_t index_;
  uint32_t size_;
  uint32_t offset_;
};

}  // namespace

void RegisterAttest(Napi::Env env, Napi::Object exports) {
  // quote(ctx, signKey, signAuth, TPMT_SIG_SCHEME, qualifyingData, TPML_PCR_SELECTION)
  Export(env, exports, "quote", [](const Napi::CallbackInfo& info) {
    return StartWorker<QuoteWorker>(info, U32Arg(info, 1, "signKey"), AuthArg(info, 2, "signAuth"),
                                    BytesArg(info, 3, "scheme"), BytesArg(info, 4, "qualifyingData"),
                                    BytesArg(info, 5, "selection"));
  });
  // certify(ctx, object, objectAuth, signKey, signAuth, TPMT_SIG_SCHEME, qualifyingData)
  Export(env, exports, "certify", [](const Napi::CallbackInfo& info) {
    return StartWorker<CertifyWorker>(info, U32Arg(info, 1, "object"), AuthArg(info, 2, "objectAuth"),
                                      U32Arg(info, 3, "signKey"), AuthArg(info, 4, "signAuth"),
                                      BytesArg(info, 5, "scheme"), BytesArg(info, 6, "qualifyingData"));
  });
  // nvCertify(ctx, signKey, signAuth, authHandle, auth, index, TPMT_SIG_SCHEME, qualifyingData,
  //           size, offset)
  Export(env, exports, "nvCertify", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvCertifyWorker>(info, U32Arg(info, 1, "signKey"), AuthArg(info, 2, "signAuth"),
                                        U32Arg(info, 3, "authHandle"), AuthArg(info, 4, "auth"),
                                        U32Arg(info, 5, "index"), BytesArg(info, 6, "scheme"),
                                        BytesArg(info, 7, "qualifyingData"), U32Arg(info, 8, "size"),
                                        U32Arg(info, 9, "offset"));
  });
}

}  // namespace grantor
