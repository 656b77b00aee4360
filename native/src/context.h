// One ESYS context over one TCTI connection. Opened asynchronously (connecting may block),
// closed synchronously; the TypeScript facade never closes while a command runs.
#pragma once

#include <tss2/tss2_tctildr.h>

#include "common.h"

namespace grantor {

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::FunctionReference* constructor;

  explicit Context(const Napi::CallbackInfo& info);
  ~Context() override;

  ESYS_CONTEXT* esys() const { return esys_; }
  bool busy() const { return busy_; }
  void set_busy(bool b) { busy_ = b; }
  void Adopt(TSS2_TCTI_CONTEXT* tcti, ESYS_CONTEXT* esys);

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsOpen(const Napi::CallbackInfo& info);
  void Finalize();

  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  bool busy_ = false;
};

}  // namespace grantor
