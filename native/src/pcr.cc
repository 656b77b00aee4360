// PCR_Read (one TPM round; the facade loops until the selection is covered) and PCR_Extend.
#include "common.h"

namespace grantor {
namespace {

class PcrReadWorker : public TpmWorker {
 public:
  PcrReadWorker(Napi::Env env, Context* ctx, const Bytes& selection) : TpmWorker(env, ctx, "PCR_Read") {
    Fail(UnmarshalAll(Tss2_MU_TPML_PCR_SELECTION_Unmarshal, selection, &selection_));
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TPML_PCR_SELECTION* outSel = nullptr;
    TPML_DIGEST* values = nullptr;
    TSS2_RC rc =
        Esys_PCR_Read(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &selection_, &counter_, &outSel, &values);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPML_PCR_SELECTION_Marshal, outSel, &selOut_);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPML_DIGEST_Marshal, values, &values_);
    Esys_Free(outSel);
    Esys_Free(values);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("updateCounter", Napi::Number::New(env, counter_));
    o.Set("selection", ToBuffer(env, selOut_));
    o.Set("digests", ToBuffer(env, values_));
    return o;
  }
  TPML_PCR_SELECTION selection_ = {};
  UINT32 counter_ = 0;
  Bytes selOut_;
  Bytes values_;
};

class PcrExtendWorker : public TpmWorker {
 public:
  PcrExtendWorker(Napi::Env env, Context* ctx, uint32_t pcr, const Bytes& digests)
      : TpmWorker(env, ctx, "PCR_Extend"), pcr_(pcr) {
    if (pcr > TPM2_PCR_LAST) Fail(TSS2_ESYS_RC_BAD_VALUE);
    Fail(UnmarshalAll(Tss2_MU_TPML_DIGEST_VALUES_Unmarshal, digests, &digests_));
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    return Esys_PCR_Extend(esys, ESYS_TR_PCR0 + pcr_, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digests_);
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  uint32_t pcr_;
  TPML_DIGEST_VALUES digests_ = {};
};

// pcrRead(ctx, TPML_PCR_SELECTION): Promise<{updateCounter, selection: TPML_PCR_SELECTION,
// digests: TPML_DIGEST}>
Napi::Value PcrRead(const Napi::CallbackInfo& info) {
  return (new PcrReadWorker(info.Env(), ContextArg(info, 0), BytesArg(info, 1, "selection")))->Start();
}
// pcrExtend(ctx, pcr: number, TPML_DIGEST_VALUES): Promise<void>
Napi::Value PcrExtend(const Napi::CallbackInfo& info) {
  return (new PcrExtendWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "pcr"), BytesArg(info, 2, "digests")))
      ->Start();
}

}  // namespace

void RegisterPcr(Napi::Env env, Napi::Object exports) {
  exports.Set("pcrRead", Napi::Function::New(env, PcrRead, "pcrRead"));
  exports.Set("pcrExtend", Napi::Function::New(env, PcrExtend, "pcrExtend"));
}

}  // namespace grantor
