// Startup, self-test, GetRandom, ReadClock.
#include "common.h"

namespace grantor {

void RegisterRandomClock(Napi::Env env, Napi::Object exports) {
  // startup(ctx, clear: boolean): Promise<void>
  Export(env, exports, "startup", [](const Napi::CallbackInfo& info) {
    TPM2_SU type = BoolArg(info, 1, "clear") ? TPM2_SU_CLEAR : TPM2_SU_STATE;
    return Call(info, "Startup", {}, [type](ESYS_CONTEXT* esys, Bytes*) { return Esys_Startup(esys, type); });
  });
  // selfTest(ctx, full: boolean): Promise<void>
  Export(env, exports, "selfTest", [](const Napi::CallbackInfo& info) {
    TPMI_YES_NO full = BoolArg(info, 1, "full") ? TPM2_YES : TPM2_NO;
    return Call(info, "SelfTest", {}, [full](ESYS_CONTEXT* esys, Bytes*) {
      return Esys_SelfTest(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, full);
    });
  });
  // getRandom(ctx, bytes: number): Promise<Buffer /* TPM2B_DIGEST */>
  Export(env, exports, "getRandom", [](const Napi::CallbackInfo& info) {
    uint32_t n = U32Arg(info, 1, "bytes");
    return Call(info, "GetRandom", {nullptr}, [n](ESYS_CONTEXT* esys, Bytes* out) {
      if (n > sizeof(TPMU_HA)) return static_cast<TSS2_RC>(TSS2_ESYS_RC_BAD_VALUE);
      TPM2B_DIGEST* random = nullptr;
      TSS2_RC rc = Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, static_cast<UINT16>(n), &random);
      return Keep(rc, Tss2_MU_TPM2B_DIGEST_Marshal, random, out);
    });
  });
  // readClock(ctx): Promise<Buffer /* TPMS_TIME_INFO */>
  Export(env, exports, "readClock", [](const Napi::CallbackInfo& info) {
    return Call(info, "ReadClock", {nullptr}, [](ESYS_CONTEXT* esys, Bytes* out) {
      TPMS_TIME_INFO* time = nullptr;
      TSS2_RC rc = Esys_ReadClock(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &time);
      return Keep(rc, Tss2_MU_TPMS_TIME_INFO_Marshal, time, out);
    });
  });
}

}  // namespace grantor
