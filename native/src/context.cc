#include "context.h"

namespace grantor {

Napi::FunctionReference* Context::constructor = nullptr;

namespace {

// Connects the TCTI and initialises ESYS off the event loop; the context adopts both.
class OpenWorker : public TpmWorker {
 public:
  OpenWorker(Napi::Env env, Context* ctx, std::string tcti)
      : TpmWorker(env, ctx, "open", true), ctx_(ctx), tcti_(std::move(tcti)) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT*) override {
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti_.c_str(), &tcti_ctx_);
    if (rc != TSS2_RC_SUCCESS) {
      tcti_ctx_ = nullptr;
      return rc;
    }
    rc = Esys_Initialize(&esys_, tcti_ctx_, nullptr);
    if (rc != TSS2_RC_SUCCESS) {
      esys_ = nullptr;
      Tss2_TctiLdr_Finalize(&tcti_ctx_);
    }
    return rc;
  }
  Napi::Value Result(Napi::Env env) override {
    ctx_->Adopt(tcti_ctx_, esys_);
    return env.Undefined();
  }

  Context* ctx_;
  std::string tcti_;
  TSS2_TCTI_CONTEXT* tcti_ctx_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
};

}  // namespace

Napi::Function Context::Define(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "Context",
                                  {
                                      InstanceMethod<&Context::Open>("open"),
                                      InstanceMethod<&Context::Close>("close"),
                                      InstanceMethod<&Context::IsOpen>("isOpen"),
                                  });
  constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  env.SetInstanceData<Napi::FunctionReference>(constructor);
  return fn;
}

Context::Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {}

Context::~Context() { Finalize(); }

void Context::Adopt(TSS2_TCTI_CONTEXT* tcti, ESYS_CONTEXT* esys) {
  tcti_ = tcti;
  esys_ = esys;
}

TSS2_RC Context::ResolveNv(TPM2_HANDLE index, ESYS_TR* out) {
  for (const auto& [handle, tr] : nv_) {
    if (handle != index) continue;
    *out = tr;
    return TSS2_RC_SUCCESS;
  }
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys_, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out);
  if (rc == TSS2_RC_SUCCESS) nv_.emplace_back(index, *out);
  return rc;
}

void Context::DropNv() {
  if (esys_ != nullptr) {
    for (auto& [handle, tr] : nv_) Esys_TR_Close(esys_, &tr);
  }
  nv_.clear();
}

void Context::Finalize() {
  DropNv();
  if (esys_ != nullptr) Esys_Finalize(&esys_);
  if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  esys_ = nullptr;
  tcti_ = nullptr;
}

// open(tcti: string): Promise<void>
Napi::Value Context::Open(const Napi::CallbackInfo& info) {
  std::string tcti = StringArg(info, 0, "tcti");
  return (new OpenWorker(info.Env(), this, std::move(tcti)))->Start();
}

// close(): idempotent; throws when a command is still running.
Napi::Value Context::Close(const Napi::CallbackInfo& info) {
  if (busy_) throw MakeStateError(info.Env(), "ERR_TPM_BUSY", "cannot close while a TPM command runs");
  Finalize();
  return info.Env().Undefined();
}

Napi::Value Context::IsOpen(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), esys_ != nullptr);
}

void RegisterContext(Napi::Env env, Napi::Object exports) { exports.Set("Context", Context::Define(env)); }

}  // namespace grantor
