// Shared pieces of the addon: argument checks, TPM error objects, marshalling helpers, the
// base AsyncWorker every TPM command derives from (a class per command family, or one
// closure through Call), and Export. All TPM calls run in Execute().
#pragma once

#include <napi.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace grantor {

using Bytes = std::vector<uint8_t>;

class Context;

// ---- arguments (main thread; a wrong type throws a TypeError) ----

Context* ContextArg(const Napi::CallbackInfo& info, size_t i);
Bytes BytesArg(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name);
// An array of unsigned 32-bit integers.
std::vector<uint32_t> U32ListArg(const Napi::CallbackInfo& info, size_t i, const char* name);
// An array of Buffers / Uint8Arrays (each copied).
std::vector<Bytes> BytesListArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// Overwrites secret bytes before the memory is released.
void Wipe(Bytes* b);
void WipeMemory(void* p, size_t n);
template <typename T>
void WipeTpm2b(T* b) {
  WipeMemory(b->buffer, sizeof(b->buffer));
}

// Secret bytes (an auth value): moved, never copied, wiped when they go.
struct Secret {
  Bytes bytes;
  Secret() = default;
  explicit Secret(Bytes b) : bytes(std::move(b)) {}
  Secret(Secret&&) = default;
  ~Secret() { Wipe(&bytes); }
};
Secret SecretArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// How to authorise the use of an object, index or hierarchy: its auth value (password
// session), or for an EK the TCG EK policy (PolicySecret on the endorsement hierarchy).
struct Auth {
  Secret value;
  bool ekPolicy = false;
  Secret endorsementAuth;
};
// Reads {value?: Uint8Array, ekPolicy?: boolean, endorsementAuth?: Uint8Array} or undefined.
Auth AuthArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// A TPM handle and how to authorise its use: arguments i (`name`) and i + 1 (`authName`).
struct AuthHandle {
  uint32_t handle = 0;
  Auth auth;
};
AuthHandle AuthHandleArg(const Napi::CallbackInfo& info, size_t i, const char* name, const char* authName);

// ---- marshalling (worker thread) ----

template <typename T>
using MarshalFn = TSS2_RC (*)(T const*, uint8_t[], size_t, size_t*);
template <typename T>
using UnmarshalFn = TSS2_RC (*)(uint8_t const[], size_t, size_t*, T*);

// The whole input must be one structure: trailing bytes are rejected as a MU size error.
template <typename T>
TSS2_RC UnmarshalAll(UnmarshalFn<T> fn, const Bytes& in, T* out) {
  size_t off = 0;
  TSS2_RC rc = fn(in.data(), in.size(), &off, out);
  if (rc != TSS2_RC_SUCCESS) return rc;
  return off == in.size() ? TSS2_RC_SUCCESS : TSS2_MU_RC_BAD_SIZE;
}

template <typename T>
TSS2_RC MarshalTo(MarshalFn<T> fn, const T* value, Bytes* out) {
  // The packed form is never longer than the C struct (no padding, bounded arrays).
  out->assign(sizeof(T) + 16, 0);
  size_t off = 0;
  TSS2_RC rc = fn(value, out->data(), out->size(), &off);
  if (rc != TSS2_RC_SUCCESS) return rc;
  out->resize(off);
  return TSS2_RC_SUCCESS;
}

// Copies raw bytes into a TPM2B of the given capacity (e.g. TPM2B_DATA, TPM2B_AUTH).
TSS2_RC FillBuffer(const Bytes& in, uint8_t* buffer, size_t capacity, UINT16* size);
template <typename T>
TSS2_RC FillTpm2b(const Bytes& in, T* out) {
  return FillBuffer(in, out->buffer, sizeof(out->buffer), &out->size);
}

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const Bytes& b);
// {key: Buffer, ...} of marshalled results, then {key: number, ...} (handles, counters).
Napi::Object Fields(Napi::Env env, std::initializer_list<std::pair<const char*, const Bytes*>> fields,
                    std::initializer_list<std::pair<const char*, uint32_t>> numbers = {});

// Marshals an ESYS output into `out` when `rc` is success, and frees the output either way.
template <typename T>
TSS2_RC Keep(TSS2_RC rc, MarshalFn<T> fn, T* value, Bytes* out) {
  if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(fn, value, out);
  Esys_Free(value);
  return rc;
}

// Flushes a session or transient object; when the TPM refuses, forgets its ESYS_TR.
TSS2_RC FlushOrClose(ESYS_CONTEXT* esys, ESYS_TR* tr);
// Starts an unbound, unsalted policy session hashing with `hashAlg`.
TSS2_RC StartPolicySession(ESYS_CONTEXT* esys, TPMI_ALG_HASH hashAlg, ESYS_TR* session);

// ---- handles (worker thread) ----

// A handle resolved and authorised in a HandleScope: its ESYS_TR and the session for it.
struct Authorized {
  ESYS_TR tr = ESYS_TR_NONE;
  ESYS_TR session = ESYS_TR_NONE;
};

// Turns a TPM handle (hierarchy, PCR, transient, persistent, NV index) into an ESYS_TR.
// Hierarchies and PCRs map to ESYS constants; others are read from the TPM and closed
// again by HandleScope (closing an ESYS_TR never flushes the TPM object). NV indices come
// from the running worker's context instead (Context::ResolveNv: ESYS hands out one ESYS_TR
// per TPM handle, so a scope must not close a kept one), and an auth value set on one is
// cleared when the scope ends.
class HandleScope {
 public:
  explicit HandleScope(ESYS_CONTEXT* esys);
  ~HandleScope();
  HandleScope(const HandleScope&) = delete;
  HandleScope& operator=(const HandleScope&) = delete;
  TSS2_RC Resolve(TPM2_HANDLE handle, ESYS_TR* out);
  // A command's target (an NV index, an object) resolved, and the handle that authorises the
  // command (a hierarchy, or the target itself) resolved and authorised: a password session
  // or the EK policy session, per the handle's Auth.
  TSS2_RC AuthorizeOn(const AuthHandle& authHandle, TPM2_HANDLE target, Authorized* out, ESYS_TR* targetTr);
  // AuthorizeOn the handle itself.
  TSS2_RC Authorize(const AuthHandle& h, Authorized* out) { return AuthorizeOn(h, h.handle, out, &out->tr); }

 private:
  TSS2_RC AuthorizeTr(ESYS_TR tr, const Auth& auth, ESYS_TR* session);
  // Sets the auth value on a resolved handle; hierarchies are reset to empty afterwards.
  TSS2_RC SetAuth(ESYS_TR tr, const Bytes& value);
  // Starts the EK policy session (PolicySecret on the endorsement hierarchy) for `key`,
  // hashing with the key's nameAlg; it is flushed when the scope ends.
  TSS2_RC EkPolicySession(ESYS_TR key, const Bytes& endorsementAuth, ESYS_TR* session);

  ESYS_CONTEXT* esys_;
  Context* kept_;
  std::vector<ESYS_TR> kept_nv_;
  std::vector<ESYS_TR> opened_;
  // Handles that outlive the scope (hierarchies, kept NV indices) with an auth value set.
  std::vector<ESYS_TR> authSet_;
  std::vector<ESYS_TR> sessions_;
};

// ---- the worker base ----

class TpmWorker : public Napi::AsyncWorker {
 public:
  // `opens`: the worker opens the context (Context::open), which must then be closed.
  TpmWorker(Napi::Env env, Context* ctx, const char* command, bool opens = false);
  // Queues the worker and returns its promise (rejects at once when the context is
  // closed or already running a command: the TypeScript facade serialises calls).
  Napi::Value Start();

 protected:
  virtual TSS2_RC Run(ESYS_CONTEXT* esys) = 0;
  // What the promise resolves with (by default nothing).
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }
  // Records a failure found while preparing inputs; Run() is then skipped.
  void Fail(TSS2_RC rc) {
    if (rc_ == TSS2_RC_SUCCESS) rc_ = rc;
  }
  bool Failed() const { return rc_ != TSS2_RC_SUCCESS; }
  // Drops the context's kept NV handles (Context::DropNv) after a failure Run() absorbs.
  void ForgetNvHandles();
  // Names the command that failed, when a worker runs several (the rejection's `command`).
  void SetCommand(const char* command) { command_ = command; }
  // Adds fields to the rejection of a failed Run() (main thread; by default nothing).
  virtual void Annotate(Napi::Object error) { (void)error; }

 private:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;
  void Release();

  Context* ctx_;
  Napi::ObjectReference ctxRef_;
  Napi::Promise::Deferred deferred_;
  const char* command_;
  bool opens_;
  ESYS_CONTEXT* esys_ = nullptr;
  TSS2_RC rc_ = TSS2_RC_SUCCESS;
};

// A command in one closure: `run(esys, out)` runs on the worker thread with its inputs
// captured (checked and copied) on the main thread, and fills out[i] for fields[i]; resolves
// with nothing (no fields), out[0] as a Buffer (one field, nullptr), or {field: Buffer, ...}.
// The outputs are wiped when the worker goes (one may be a secret, e.g. ActivateCredential's).
template <typename F>
class CallWorker : public TpmWorker {
 public:
  CallWorker(Napi::Env env, Context* ctx, const char* command, std::vector<const char*> fields, F run)
      : TpmWorker(env, ctx, command), fields_(std::move(fields)), out_(fields_.size()), run_(std::move(run)) {}
  ~CallWorker() override {
    for (Bytes& b : out_) Wipe(&b);
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override { return run_(esys, out_.data()); }
  Napi::Value Result(Napi::Env env) override {
    if (fields_.empty()) return env.Undefined();
    if (fields_[0] == nullptr) return ToBuffer(env, out_[0]);
    Napi::Object o = Napi::Object::New(env);
    for (size_t i = 0; i < fields_.size(); i++) o.Set(fields_[i], ToBuffer(env, out_[i]));
    return o;
  }
  std::vector<const char*> fields_;
  std::vector<Bytes> out_;
  F run_;
};
template <typename F>
Napi::Value Call(const Napi::CallbackInfo& info, const char* command, std::vector<const char*> fields, F run) {
  return (new CallWorker<F>(info.Env(), ContextArg(info, 0), command, std::move(fields), std::move(run)))->Start();
}

// A command on the handle in argument 1 (`name`), resolved in a HandleScope:
// run(esys, tr, out) as for Call.
template <typename F>
Napi::Value CallOn(const Napi::CallbackInfo& info, const char* name, const char* command,
                   std::vector<const char*> fields, F run) {
  uint32_t handle = U32Arg(info, 1, name);
  return Call(info, command, std::move(fields), [handle, run = std::move(run)](ESYS_CONTEXT* esys, Bytes* out) {
    HandleScope scope(esys);
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc = scope.Resolve(handle, &tr);
    return rc == TSS2_RC_SUCCESS ? run(esys, tr, out) : rc;
  });
}

// A command on `target` (an NV index, an object) authorised through `authHandle` (a
// hierarchy, or the target itself), both resolved in a HandleScope (AuthorizeOn):
// run(esys, auth, targetTr, out) as for Call.
template <typename F>
Napi::Value CallAuthorizedOn(const Napi::CallbackInfo& info, const char* command, AuthHandle authHandle,
                             uint32_t target, std::vector<const char*> fields, F run) {
  auto call = [authHandle = std::move(authHandle), target, run = std::move(run)](ESYS_CONTEXT* esys, Bytes* out) {
    HandleScope scope(esys);
    Authorized auth;
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc = scope.AuthorizeOn(authHandle, target, &auth, &tr);
    return rc == TSS2_RC_SUCCESS ? run(esys, auth, tr, out) : rc;
  };
  return Call(info, command, std::move(fields), std::move(call));
}

// Starts worker W on the context in argument 0 with the command's other (checked) arguments.
template <typename W, typename... Args>
Napi::Value StartWorker(const Napi::CallbackInfo& info, Args&&... args) {
  return (new W(info.Env(), ContextArg(info, 0), std::forward<Args>(args)...))->Start();
}

// exports[name] = fn, a function named `name`.
void Export(Napi::Env env, Napi::Object exports, const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&));

// {rc, layer, decoded, command} on an Error, code 'ERR_TPM_RC'.
Napi::Value MakeTpmError(Napi::Env env, TSS2_RC rc, const char* command);
Napi::Error MakeStateError(Napi::Env env, const char* code, const char* message);

// Registration of each command family.
void RegisterContext(Napi::Env env, Napi::Object exports);
void RegisterRandomClock(Napi::Env env, Napi::Object exports);
void RegisterPcr(Napi::Env env, Napi::Object exports);
void RegisterKeys(Napi::Env env, Napi::Object exports);
void RegisterAttest(Napi::Env env, Napi::Object exports);
void RegisterCredential(Napi::Env env, Napi::Object exports);
void RegisterNv(Napi::Env env, Napi::Object exports);
void RegisterPolicy(Napi::Env env, Napi::Object exports);

}  // namespace grantor
