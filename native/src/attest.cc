// Signed attestations: Quote, Certify, NV_Certify. Each resolves with
// {attest: TPM2B_ATTEST, signature: TPMT_SIGNATURE}.
#include "common.h"

namespace grantor {
namespace {

// What every signing command shares: the signing key (resolved and authorised first), the
// scheme (TPMT_SIG_SCHEME; TPM2_ALG_NULL uses the key's own), the qualifying data, and the
// marshalled answer. Sign() sends the one command.
class SigningWorker : public TpmWorker {
 protected:
  SigningWorker(Napi::Env env, Context* ctx, const char* command, AuthHandle signKey, const Bytes& scheme,
                const Bytes& qualifying)
      : TpmWorker(env, ctx, command), signKey_(std::move(signKey)) {
    Fail(UnmarshalAll(Tss2_MU_TPMT_SIG_SCHEME_Unmarshal, scheme, &scheme_));
    Fail(FillTpm2b(qualifying, &qualifying_));
  }
  virtual TSS2_RC Sign(ESYS_CONTEXT* esys, HandleScope* scope, const Authorized& key, TPM2B_ATTEST** attest,
                       TPMT_SIGNATURE** sig) = 0;

  TPMT_SIG_SCHEME scheme_ = {};
  TPM2B_DATA qualifying_ = {};

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    Authorized key;
    TPM2B_ATTEST* attest = nullptr;
    TPMT_SIGNATURE* sig = nullptr;
    TSS2_RC rc = scope.Authorize(signKey_, &key);
    if (rc == TSS2_RC_SUCCESS) rc = Sign(esys, &scope, key, &attest, &sig);
    rc = Keep(rc, Tss2_MU_TPM2B_ATTEST_Marshal, attest, &attest_);
    return Keep(rc, Tss2_MU_TPMT_SIGNATURE_Marshal, sig, &signature_);
  }
  Napi::Value Result(Napi::Env env) override { return Fields(env, {{"attest", &attest_}, {"signature", &signature_}}); }

  AuthHandle signKey_;
  Bytes attest_;
  Bytes signature_;
};

class QuoteWorker : public SigningWorker {
 public:
  QuoteWorker(Napi::Env env, Context* ctx, AuthHandle signKey, const Bytes& scheme, const Bytes& qualifying,
              const Bytes& selection)
      : SigningWorker(env, ctx, "Quote", std::move(signKey), scheme, qualifying) {
    Fail(UnmarshalAll(Tss2_MU_TPML_PCR_SELECTION_Unmarshal, selection, &selection_));
  }

 private:
  TSS2_RC Sign(ESYS_CONTEXT* esys, HandleScope*, const Authorized& key, TPM2B_ATTEST** attest,
               TPMT_SIGNATURE** sig) override {
    return Esys_Quote(esys, key.tr, key.session, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying_, &scheme_, &selection_,
                      attest, sig);
  }
  TPML_PCR_SELECTION selection_ = {};
};

class CertifyWorker : public SigningWorker {
 public:
  CertifyWorker(Napi::Env env, Context* ctx, AuthHandle object, AuthHandle signKey, const Bytes& scheme,
                const Bytes& qualifying)
      : SigningWorker(env, ctx, "Certify", std::move(signKey), scheme, qualifying), object_(std::move(object)) {}

 private:
  TSS2_RC Sign(ESYS_CONTEXT* esys, HandleScope* scope, const Authorized& key, TPM2B_ATTEST** attest,
               TPMT_SIGNATURE** sig) override {
    Authorized obj;
    TSS2_RC rc = scope->Authorize(object_, &obj);
    if (rc != TSS2_RC_SUCCESS) return rc;
    return Esys_Certify(esys, obj.tr, key.tr, obj.session, key.session, ESYS_TR_NONE, &qualifying_, &scheme_, attest,
                        sig);
  }
  AuthHandle object_;
};

class NvCertifyWorker : public SigningWorker {
 public:
  NvCertifyWorker(Napi::Env env, Context* ctx, AuthHandle signKey, AuthHandle authHandle, uint32_t index,
                  const Bytes& scheme, const Bytes& qualifying, uint32_t size, uint32_t offset)
      : SigningWorker(env, ctx, "NV_Certify", std::move(signKey), scheme, qualifying),
        authHandle_(std::move(authHandle)),
        index_(index),
        size_(static_cast<UINT16>(size)),
        offset_(static_cast<UINT16>(offset)) {
    if (size > 0xffff || offset > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  TSS2_RC Sign(ESYS_CONTEXT* esys, HandleScope* scope, const Authorized& key, TPM2B_ATTEST** attest,
               TPMT_SIGNATURE** sig) override {
    Authorized auth;
    ESYS_TR index = ESYS_TR_NONE;
    TSS2_RC rc = scope->AuthorizeOn(authHandle_, index_, &auth, &index);
    if (rc != TSS2_RC_SUCCESS) return rc;
    return Esys_NV_Certify(esys, key.tr, auth.tr, index, key.session, auth.session, ESYS_TR_NONE, &qualifying_,
                           &scheme_, size_, offset_, attest, sig);
  }
  AuthHandle authHandle_;
  uint32_t index_;
  UINT16 size_;
  UINT16 offset_;
};

}  // namespace

void RegisterAttest(Napi::Env env, Napi::Object exports) {
  // quote(ctx, signKey, signAuth, TPMT_SIG_SCHEME, qualifyingData, TPML_PCR_SELECTION)
  Export(env, exports, "quote", [](const Napi::CallbackInfo& info) {
    return StartWorker<QuoteWorker>(info, AuthHandleArg(info, 1, "signKey", "signAuth"), BytesArg(info, 3, "scheme"),
                                    BytesArg(info, 4, "qualifyingData"), BytesArg(info, 5, "selection"));
  });
  // certify(ctx, object, objectAuth, signKey, signAuth, TPMT_SIG_SCHEME, qualifyingData)
  Export(env, exports, "certify", [](const Napi::CallbackInfo& info) {
    return StartWorker<CertifyWorker>(info, AuthHandleArg(info, 1, "object", "objectAuth"),
                                      AuthHandleArg(info, 3, "signKey", "signAuth"), BytesArg(info, 5, "scheme"),
                                      BytesArg(info, 6, "qualifyingData"));
  });
  // nvCertify(ctx, signKey, signAuth, authHandle, auth, index, TPMT_SIG_SCHEME, qualifyingData,
  //           size, offset)
  Export(env, exports, "nvCertify", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvCertifyWorker>(info, AuthHandleArg(info, 1, "signKey", "signAuth"),
                                        AuthHandleArg(info, 3, "authHandle", "auth"), U32Arg(info, 5, "index"),
                                        BytesArg(info, 6, "scheme"), BytesArg(info, 7, "qualifyingData"),
                                        U32Arg(info, 8, "size"), U32Arg(info, 9, "offset"));
  });
}

}  // namespace grantor
