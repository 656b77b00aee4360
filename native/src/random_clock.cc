// Startup, self-test, GetRandom, ReadClock.
#include "common.h"

namespace grantor {
namespace {

class StartupWorker : public TpmWorker {
 public:
  StartupWorker(Napi::Env env, Context* ctx, bool clear)
      : TpmWorker(env, ctx, "Startup"), type_(clear ? TPM2_SU_CLEAR : TPM2_SU_STATE) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override { return Esys_Startup(esys, type_); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  TPM2_SU type_;
};

class SelfTestWorker : public TpmWorker {
 public:
  SelfTestWorker(Napi::Env env, Context* ctx, bool full) : TpmWorker(env, ctx, "SelfTest"), full_(full) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    return Esys_SelfTest(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, full_ ? TPM2_YES : TPM2_NO);
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  bool full_;
};

class GetRandomWorker : public TpmWorker {
 public:
  GetRandomWorker(Napi::Env env, Context* ctx, uint32_t n) : TpmWorker(env, ctx, "GetRandom"), n_(n) {
    if (n > sizeof(TPMU_HA)) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TPM2B_DIGEST* out = nullptr;
    TSS2_RC rc = Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, static_cast<UINT16>(n_), &out);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_DIGEST_Marshal, out, &bytes_);
    Esys_Free(out);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return ToBuffer(env, bytes_); }
  uint32_t n_;
  Bytes bytes_;
};

class ReadClockWorker : public TpmWorker {
 public:
  ReadClockWorker(Napi::Env env, Context* ctx) : TpmWorker(env, ctx, "ReadClock") {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    TPMS_TIME_INFO* out = nullptr;
    TSS2_RC rc = Esys_ReadClock(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &out);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPMS_TIME_INFO_Marshal, out, &bytes_);
    Esys_Free(out);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return ToBuffer(env, bytes_); }
  Bytes bytes_;
};

// startup(ctx, clear: boolean): Promise<void>
Napi::Value Startup(const Napi::CallbackInfo& info) {
  return (new StartupWorker(info.Env(), ContextArg(info, 0), BoolArg(info, 1, "clear")))->Start();
}
// selfTest(ctx, full: boolean): Promise<void>
Napi::Value SelfTest(const Napi::CallbackInfo& info) {
  return (new SelfTestWorker(info.Env(), ContextArg(info, 0), BoolArg(info, 1, "full")))->Start();
}
// getRandom(ctx, bytes: number): Promise<Buffer /* TPM2B_DIGEST */>
Napi::Value GetRandom(const Napi::CallbackInfo& info) {
  return (new GetRandomWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "bytes")))->Start();
}
// readClock(ctx): Promise<Buffer /* TPMS_TIME_INFO */>
Napi::Value ReadClock(const Napi::CallbackInfo& info) {
  return (new ReadClockWorker(info.Env(), ContextArg(info, 0)))->Start();
}

}  // namespace

void RegisterRandomClock(Napi::Env env, Napi::Object exports) {
  exports.Set("startup", Napi::Function::New(env, Startup, "startup"));
  exports.Set("selfTest", Napi::Function::New(env, SelfTest, "selfTest"));
  exports.Set("getRandom", Napi::Function::New(env, GetRandom, "getRandom"));
  exports.Set("readClock", Napi::Function::New(env, ReadClock, "readClock"));
}

}  // namespace grantor
