// Placeholder module init; the TPM command workers are added in native/src/*.cc.
#include <napi.h>

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return exports; }

NODE_API_MODULE(grantor_tpm, Init)
