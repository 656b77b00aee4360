#include "common.h"

#include <tss2/tss2_rc.h>

#include <algorithm>
#include <cstring>

#include "context.h"

namespace grantor {

// ---- arguments ----

namespace {
Napi::TypeError TypeErr(Napi::Env env, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  return e;
}

Bytes CopyBytes(Napi::Value v, Napi::Env env, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw TypeErr(env, std::string(name) + " must be a Uint8Array");
  }
  auto arr = v.As<Napi::Uint8Array>();
  // Copy into C++-owned memory: the caller's buffer may change while the worker runs.
  return Bytes(arr.Data(), arr.Data() + arr.ByteLength());
}

bool IsU32(Napi::Value v) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  return d >= 0 && d <= 4294967295.0 && d == static_cast<double>(static_cast<uint32_t>(d));
}
}  // namespace

Context* ContextArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsObject() || Context::constructor == nullptr ||
      !v.As<Napi::Object>().InstanceOf(Context::constructor->Value())) {
    throw TypeErr(info.Env(), "argument 0 must be a Context");
  }
  return Context::Unwrap(v.As<Napi::Object>());
}

Bytes BytesArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return CopyBytes(info[i], info.Env(), name);
}

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) throw TypeErr(info.Env(), std::string(name) + " must be a number");
  if (!IsU32(v)) throw TypeErr(info.Env(), std::string(name) + " must be an unsigned 32-bit integer");
  return v.As<Napi::Number>().Uint32Value();
}

std::vector<uint32_t> U32ListArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsArray()) throw TypeErr(info.Env(), std::string(name) + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<uint32_t> out;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value e = a.Get(k);
    if (!IsU32(e)) throw TypeErr(info.Env(), std::string(name) + " must hold unsigned 32-bit integers");
    out.push_back(e.As<Napi::Number>().Uint32Value());
  }
  return out;
}

std::vector<Bytes> BytesListArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsArray()) throw TypeErr(info.Env(), std::string(name) + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<Bytes> out;
  for (uint32_t k = 0; k < a.Length(); k++) out.push_back(CopyBytes(a.Get(k), info.Env(), name));
  return out;
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) throw TypeErr(info.Env(), std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsString()) throw TypeErr(info.Env(), std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

void WipeMemory(void* p, size_t n) {
  volatile uint8_t* v = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; i++) v[i] = 0;
}

void Wipe(Bytes* b) {
  if (!b->empty()) WipeMemory(b->data(), b->size());
  b->clear();
}

Secret SecretArg(const Napi::CallbackInfo& info, size_t i, const char* name) { return Secret(BytesArg(info, i, name)); }

Auth AuthArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Auth a;
  Napi::Value v = info[i];
  if (v.IsUndefined() || v.IsNull()) return a;
  if (!v.IsObject()) throw TypeErr(info.Env(), std::string(name) + " must be an object");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Env env = info.Env();
  auto given = [&o](const char* key) { return o.Has(key) && !o.Get(key).IsUndefined(); };
  if (given("value")) a.value.bytes = CopyBytes(o.Get("value"), env, name);
  if (given("ekPolicy")) {
    if (!o.Get("ekPolicy").IsBoolean()) throw TypeErr(env, std::string(name) + ".ekPolicy must be a boolean");
    a.ekPolicy = o.Get("ekPolicy").As<Napi::Boolean>().Value();
  }
  if (given("endorsementAuth")) a.endorsementAuth.bytes = CopyBytes(o.Get("endorsementAuth"), env, name);
  if (a.value.bytes.size() > sizeof(TPMU_HA) || a.endorsementAuth.bytes.size() > sizeof(TPMU_HA)) {
    throw TypeErr(env, std::string(name) + ": auth value too long");
  }
  return a;
}

AuthHandle AuthHandleArg(const Napi::CallbackInfo& info, size_t i, const char* name, const char* authName) {
  return AuthHandle{U32Arg(info, i, name), AuthArg(info, i + 1, authName)};
}

TSS2_RC FillBuffer(const Bytes& in, uint8_t* buffer, size_t capacity, UINT16* size) {
  if (in.size() > capacity) return TSS2_MU_RC_BAD_SIZE;
  *size = static_cast<UINT16>(in.size());
  if (!in.empty()) std::memcpy(buffer, in.data(), in.size());
  return TSS2_RC_SUCCESS;
}

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const Bytes& b) {
  return Napi::Buffer<uint8_t>::Copy(env, b.data(), b.size());
}

Napi::Object Fields(Napi::Env env, std::initializer_list<std::pair<const char*, const Bytes*>> fields,
                    std::initializer_list<std::pair<const char*, uint32_t>> numbers) {
  Napi::Object o = Napi::Object::New(env);
  for (const auto& f : fields) o.Set(f.first, ToBuffer(env, *f.second));
  for (const auto& n : numbers) o.Set(n.first, Napi::Number::New(env, n.second));
  return o;
}

TSS2_RC FlushOrClose(ESYS_CONTEXT* esys, ESYS_TR* tr) {
  TSS2_RC rc = Esys_FlushContext(esys, *tr);  // frees the ESYS_TR on success
  if (rc != TSS2_RC_SUCCESS) Esys_TR_Close(esys, tr);
  return rc;
}

TSS2_RC StartPolicySession(ESYS_CONTEXT* esys, TPMI_ALG_HASH hashAlg, ESYS_TR* session) {
  TPMT_SYM_DEF sym = {};
  sym.algorithm = TPM2_ALG_NULL;
  return Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                               TPM2_SE_POLICY, &sym, hashAlg, session);
}

void Export(Napi::Env env, Napi::Object exports, const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
  exports.Set(name, Napi::Function::New(env, fn, name));
}

// ---- handles ----

namespace {
bool HierarchyTr(TPM2_HANDLE h, ESYS_TR* out) {
  static const std::pair<TPM2_HANDLE, ESYS_TR> kHierarchies[] = {
      {TPM2_RH_OWNER, ESYS_TR_RH_OWNER},     {TPM2_RH_ENDORSEMENT, ESYS_TR_RH_ENDORSEMENT},
      {TPM2_RH_PLATFORM, ESYS_TR_RH_PLATFORM}, {TPM2_RH_LOCKOUT, ESYS_TR_RH_LOCKOUT},
      {TPM2_RH_NULL, ESYS_TR_RH_NULL}};
  for (const auto& [handle, tr] : kHierarchies) {
    if (h != handle) continue;
    *out = tr;
    return true;
  }
  return false;
}

// The context of the worker running on this thread (set around Run()), for its NV handles.
thread_local Context* tRunning = nullptr;
}  // namespace

HandleScope::HandleScope(ESYS_CONTEXT* esys) : esys_(esys), kept_(tRunning) {}

HandleScope::~HandleScope() {
  for (ESYS_TR s : sessions_) FlushOrClose(esys_, &s);
  for (ESYS_TR h : authSet_) Esys_TR_SetAuth(esys_, h, nullptr);
  for (ESYS_TR t : opened_) Esys_TR_Close(esys_, &t);
}

TSS2_RC HandleScope::Resolve(TPM2_HANDLE handle, ESYS_TR* out) {
  if (HierarchyTr(handle, out)) return TSS2_RC_SUCCESS;
  if (handle <= TPM2_PCR_LAST) {
    *out = ESYS_TR_PCR0 + handle;
    return TSS2_RC_SUCCESS;
  }
  if (kept_ != nullptr && (handle >> TPM2_HR_SHIFT) == TPM2_HT_NV_INDEX) {
    TSS2_RC rc = kept_->ResolveNv(handle, out);
    if (rc == TSS2_RC_SUCCESS) kept_nv_.push_back(*out);
    return rc;
  }
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys_, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out);
  if (rc == TSS2_RC_SUCCESS) opened_.push_back(*out);
  return rc;
}

TSS2_RC HandleScope::SetAuth(ESYS_TR tr, const Bytes& value) {
  TPM2B_AUTH auth = {};
  TSS2_RC rc = FillTpm2b(value, &auth);
  if (rc != TSS2_RC_SUCCESS) return rc;
  rc = Esys_TR_SetAuth(esys_, tr, &auth);
  WipeTpm2b(&auth);
  bool outlives = (tr >= ESYS_TR_RH_OWNER && tr <= ESYS_TR_RH_PLATFORM_NV) ||
                  std::find(kept_nv_.begin(), kept_nv_.end(), tr) != kept_nv_.end();
  if (rc == TSS2_RC_SUCCESS && outlives) authSet_.push_back(tr);
  return rc;
}

TSS2_RC HandleScope::EkPolicySession(ESYS_TR key, const Bytes& endorsementAuth, ESYS_TR* session) {
  TPM2B_NAME* name = nullptr;
  TSS2_RC rc = Esys_TR_GetName(esys_, key, &name);
  if (rc != TSS2_RC_SUCCESS) return rc;
  // A name starts with the object's nameAlg; the EK policy is a digest in that algorithm.
  TPMI_ALG_HASH alg = name->size >= 2 ? static_cast<TPMI_ALG_HASH>((name->name[0] << 8) | name->name[1]) : 0;
  Esys_Free(name);
  if (alg == 0) return TSS2_ESYS_RC_BAD_VALUE;
  rc = StartPolicySession(esys_, alg, session);
  if (rc != TSS2_RC_SUCCESS) return rc;
  sessions_.push_back(*session);
  rc = SetAuth(ESYS_TR_RH_ENDORSEMENT, endorsementAuth);
  if (rc != TSS2_RC_SUCCESS) return rc;
  TPM2B_TIMEOUT* timeout = nullptr;
  TPMT_TK_AUTH* ticket = nullptr;
  rc = Esys_PolicySecret(esys_, ESYS_TR_RH_ENDORSEMENT, *session, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                         nullptr, nullptr, nullptr, 0, &timeout, &ticket);
  Esys_Free(timeout);
  Esys_Free(ticket);
  return rc;
}

TSS2_RC HandleScope::AuthorizeOn(const AuthHandle& authHandle, TPM2_HANDLE target, Authorized* out,
                                 ESYS_TR* targetTr) {
  TSS2_RC rc = Resolve(target, targetTr);
  if (rc != TSS2_RC_SUCCESS) return rc;
  if (authHandle.handle == target) {
    out->tr = *targetTr;
  } else {
    rc = Resolve(authHandle.handle, &out->tr);
    if (rc != TSS2_RC_SUCCESS) return rc;
  }
  return AuthorizeTr(out->tr, authHandle.auth, &out->session);
}

TSS2_RC HandleScope::AuthorizeTr(ESYS_TR tr, const Auth& auth, ESYS_TR* session) {
  TSS2_RC rc = SetAuth(tr, auth.value.bytes);
  if (rc != TSS2_RC_SUCCESS) return rc;
  if (!auth.ekPolicy) {
    *session = ESYS_TR_PASSWORD;
    return TSS2_RC_SUCCESS;
  }
  return EkPolicySession(tr, auth.endorsementAuth.bytes, session);
}

// ---- errors ----

namespace {
const char* LayerName(TSS2_RC rc) {
  // Indexed by TSS2_RC_LAYER: 0 TPM, 6 feature, 7 ESYS, 8 SYS, 9 MU, 10 TCTI, 11-12 resource manager.
  static const char* const kLayers[] = {"tpm", nullptr, nullptr, nullptr, nullptr, nullptr, "feature",
                                        "esys", "sys",  "mu",    "tcti",  "resmgr", "resmgr-tpm"};
  size_t layer = (rc & TSS2_RC_LAYER_MASK) >> TSS2_RC_LAYER_SHIFT;
  const char* name = layer < sizeof(kLayers) / sizeof(kLayers[0]) ? kLayers[layer] : nullptr;
  return name != nullptr ? name : "unknown";
}
}  // namespace

Napi::Value MakeTpmError(Napi::Env env, TSS2_RC rc, const char* command) {
  const char* decoded = Tss2_RC_Decode(rc);
  std::string text = decoded != nullptr ? decoded : "unknown";
  Napi::Error e = Napi::Error::New(env, std::string(command) + ": " + text);
  e.Set("code", Napi::String::New(env, "ERR_TPM_RC"));
  e.Set("rc", Napi::Number::New(env, rc));
  e.Set("layer", Napi::String::New(env, LayerName(rc)));
  e.Set("decoded", Napi::String::New(env, text));
  e.Set("command", Napi::String::New(env, command));
  return e.Value();
}

Napi::Error MakeStateError(Napi::Env env, const char* code, const char* message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// ---- worker ----

TpmWorker::TpmWorker(Napi::Env env, Context* ctx, const char* command, bool opens)
    : Napi::AsyncWorker(env),
      ctx_(ctx),
      deferred_(Napi::Promise::Deferred::New(env)),
      command_(command),
      opens_(opens) {
  ctxRef_ = Napi::Persistent(ctx->Value());
}

Napi::Value TpmWorker::Start() {
  Napi::Env env = Env();
  Napi::Promise p = deferred_.Promise();
  Napi::Error refused;
  if (opens_ && (ctx_->esys() != nullptr || ctx_->busy())) {
    refused = MakeStateError(env, "ERR_TPM_BUSY", "context is already open");
  } else if (!opens_ && ctx_->esys() == nullptr) {
    refused = MakeStateError(env, "ERR_TPM_CLOSED", "the TPM context is not open");
  } else if (ctx_->busy()) {
    refused = MakeStateError(env, "ERR_TPM_BUSY", "another TPM command is running on this context");
  }
  if (!refused.IsEmpty()) {
    deferred_.Reject(refused.Value());
    delete this;
    return p;
  }
  ctx_->set_busy(true);
  esys_ = ctx_->esys();
  Queue();
  return p;
}

void TpmWorker::Execute() {
  // A define or undefine changes what an index handle names (and a successful undefine
  // frees the index's ESYS_TR): both start and end with no kept NV handles.
  bool definesNv = std::strcmp(command_, "NV_DefineSpace") == 0 || std::strcmp(command_, "NV_UndefineSpace") == 0;
  if (opens_) {
    if (rc_ == TSS2_RC_SUCCESS) rc_ = Run(esys_);
    return;
  }
  if (definesNv) ctx_->DropNv();
  tRunning = ctx_;
  if (rc_ == TSS2_RC_SUCCESS) rc_ = Run(esys_);
  tRunning = nullptr;
  // After any failure a kept NV handle may name an index that is gone or redefined.
  if (definesNv || rc_ != TSS2_RC_SUCCESS) ctx_->DropNv();
}

void TpmWorker::ForgetNvHandles() { ctx_->DropNv(); }

void TpmWorker::Release() { ctx_->set_busy(false); }

void TpmWorker::OnOK() {
  Release();
  Napi::Env env = Env();
  if (rc_ != TSS2_RC_SUCCESS) {
    Napi::Value error = MakeTpmError(env, rc_, command_);
    Annotate(error.As<Napi::Object>());
    deferred_.Reject(error);
    return;
  }
  try {
    deferred_.Resolve(Result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void TpmWorker::OnError(const Napi::Error& e) {
  Release();
  deferred_.Reject(e.Value());
}

}  // namespace grantor
