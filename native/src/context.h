// One ESYS context over one TCTI connection. Opened asynchronously (connecting may block),
// closed synchronously; the TypeScript facade never closes while a command runs.
// It also keeps the ESYS handles of the NV indices its commands used (ResolveNv), so that an
// NV command does not start with an NV_ReadPublic (Esys_TR_FromTPMPublic) every time. Only
// the worker that holds the context (busy) touches them.
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
  // The ESYS handle of NV index `index`, read from the TPM on first use and kept. Its name is
  // ESYS's copy, used only for ESYS's own bookkeeping: the TPM authorises every command by
  // the index as it is now (a policy write's cpHash covers the caller's pinned name).
  TSS2_RC ResolveNv(TPM2_HANDLE index, ESYS_TR* out);
  // Forgets every kept NV handle: after any failed command (the index may be gone or
  // redefined), and before NV_DefineSpace and NV_UndefineSpace.
  void DropNv();

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsOpen(const Napi::CallbackInfo& info);
  void Finalize();

  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  bool busy_ = false;
  std::vector<std::pair<TPM2_HANDLE, ESYS_TR>> nv_;
};

}  // namespace grantor
