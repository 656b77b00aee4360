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
    rc = Keep(rc, Tss2_MU_TPML_PCR_SELECTION_Marshal, outSel, &selOut_);
    return Keep(rc, Tss2_MU_TPML_DIGEST_Marshal, values, &values_);
  }
  Napi::Value Result(Napi::Env env) override {
    return Fields(env, {{"selection", &selOut_}, {"digests", &values_}}, {{"updateCounter", counter_}});
  }
  TPML_PCR_SELECTION selection_ = {};
  UINT32 counter_ = 0;
  Bytes selOut_;
  Bytes values_;
};

}  // namespace

void RegisterPcr(Napi::Env env, Napi::Object exports) {
  // pcrRead(ctx, TPML_PCR_SELECTION): Promise<{updateCounter, selection: TPML_PCR_SELECTION,
  // digests: TPML_DIGEST}>
  Export(env, exports, "pcrRead", [](const Napi::CallbackInfo& info) {
    return StartWorker<PcrReadWorker>(info, BytesArg(info, 1, "selection"));
  });
  // pcrExtend(ctx, pcr: number, TPML_DIGEST_VALUES): Promise<void>
  Export(env, exports, "pcrExtend", [](const Napi::CallbackInfo& info) {
    uint32_t pcr = U32Arg(info, 1, "pcr");
    Bytes digests = BytesArg(info, 2, "digests");
    return Call(info, "PCR_Extend", {}, [pcr, digests](ESYS_CONTEXT* esys, Bytes*) {
      TPML_DIGEST_VALUES values = {};
      if (pcr > TPM2_PCR_LAST) return static_cast<TSS2_RC>(TSS2_ESYS_RC_BAD_VALUE);
      TSS2_RC rc = UnmarshalAll(Tss2_MU_TPML_DIGEST_VALUES_Unmarshal, digests, &values);
      if (rc != TSS2_RC_SUCCESS) return rc;
      return Esys_PCR_Extend(esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values);
    });
  });
}

}  // namespace grantor
