// Module init: one registration per command family (see common.h).
#include "common.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  grantor::RegisterContext(env, exports);
  grantor::RegisterRandomClock(env, exports);
  grantor::RegisterPcr(env, exports);
  grantor::RegisterKeys(env, exports);
  grantor::RegisterAttest(env, exports);
  grantor::RegisterCredential(env, exports);
  grantor::RegisterNv(env, exports);
  grantor::RegisterPolicy(env, exports);
  return exports;
}

NODE_API_MODULE(grantor_tpm, Init)
