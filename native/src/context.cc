#include "context.h"

namespace grantor {

Napi::FunctionReference* Context::constructor = nullptr;

namespace {

// Connects the TCTI and initialises ESYS off the event loop.
class OpenWorker : public Napi::AsyncWorker {
 public:
  OpenWorker(Napi::Env env, Context* ctx, Napi::Object self, std::string tcti)
      : Napi::AsyncWorker(env), ctx_(ctx), deferred_(Napi::Promise::Deferred::New(env)), tcti_(std::move(tcti)) {
    self_ = Napi::Persistent(self);
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  void Execute() override {
    rc_ = Tss2_TctiLdr_Initialize(tcti_.c_str(), &tcti_ctx_);
    if (rc_ != TSS2_RC_SUCCESS) {
      tcti_ctx_ = nullptr;
      return;
    }
    rc_ = Esys_Initialize(&esys_, tcti_ctx_, nullptr);
    if (rc_ != TSS2_RC_SUCCESS) {
      esys_ = nullptr;
      Tss2_TctiLdr_Finalize(&tcti_ctx_);
    }
  }
  void OnOK() override {
    ctx_->set_busy(false);
    if (rc_ != TSS2_RC_SUCCESS) {
      deferred_.Reject(MakeTpmError(Env(), rc_, "open"));
      return;
    }
    ctx_->Adopt(tcti_ctx_, esys_);
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    ctx_->set_busy(false);
    deferred_.Reject(e.Value());
  }

  Context* ctx_;
  Napi::ObjectReference self_;
  Napi::Promise::Deferred deferred_;
  std::string tcti_;
  TSS2_TCTI_CONTEXT* tcti_ctx_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  TSS2_RC rc_ = TSS2_RC_SUCCESS;
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

void Context::Finalize() {
  if (esys_ != nullptr) Esys_Finalize(&esys_);
  if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  esys_ = nullptr;
  tcti_ = nullptr;
}

// open(tcti: string): Promise<void>
Napi::Value Context::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string tcti = StringArg(info, 0, "tcti");
  auto deferred = Napi::Promise::Deferred::New(env);
  if (esys_ != nullptr || busy_) {
    deferred.Reject(MakeStateError(env, "ERR_TPM_BUSY", "context is already open"));
    return deferred.Promise();
  }
  busy_ = true;
  auto* w = new OpenWorker(env, this, info.This().As<Napi::Object>(), std::move(tcti));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// close(): idempotent; throws when a command is still running.
Napi::Value Context::Close(const Napi::CallbackInfo& info) {
  if (busy_) {
    Napi::Error e = Napi::Error::New(info.Env(), "cannot close while a TPM command runs");
    e.Set("code", Napi::String::New(info.Env(), "ERR_TPM_BUSY"));
    throw e;
  }
  Finalize();
  return info.Env().Undefined();
}

Napi::Value Context::IsOpen(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), esys_ != nullptr);
}

void RegisterContext(Napi::Env env, Napi::Object exports) { exports.Set("Context", Context::Define(env)); }

}  // namespace grantor
