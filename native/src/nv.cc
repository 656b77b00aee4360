// NV indices: DefineSpace, UndefineSpace, Read, Write, Increment, Extend, ReadPublic.
// authHandle is the hierarchy (owner/platform) or the index itself, per its attributes.
#include "common.h"

namespace grantor {
namespace {

// Resolves the index and its authorisation handle (possibly the index itself).
TSS2_RC ResolveNv(HandleScope* scope, uint32_t authHandle, const Auth& auth, uint32_t index, ESYS_TR* authTr,
                  ESYS_TR* indexTr, ESYS_TR* session) {
  TSS2_RC rc = scope->Resolve(index, indexTr);
  if (rc != TSS2_RC_SUCCESS) return rc;
  if (authHandle == index) {
    *authTr = *indexTr;
  } else {
    rc = scope->Resolve(authHandle, authTr);
    if (rc != TSS2_RC_SUCCESS) return rc;
  }
  return scope->Authorize(*authTr, auth, session);
}

class NvDefineWorker : public TpmWorker {
 public:
  NvDefineWorker(Napi::Env env, Context* ctx, uint32_t authHandle, Auth hierarchyAuth, Bytes indexAuth,
                 const Bytes& pub)
      : TpmWorker(env, ctx, "NV_DefineSpace"), authHandle_(authHandle), hierarchyAuth_(std::move(hierarchyAuth)) {
    Fail(FillTpm2b(indexAuth, &indexAuth_));
    Wipe(&indexAuth);
    Fail(UnmarshalAll(Tss2_MU_TPM2B_NV_PUBLIC_Unmarshal, pub, &public_));
  }
  ~NvDefineWorker() override { WipeTpm2b(&indexAuth_); }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR hier = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = scope.Resolve(authHandle_, &hier);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(hier, hierarchyAuth_, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    ESYS_TR nv = ESYS_TR_NONE;
    rc = Esys_NV_DefineSpace(esys, hier, session, ESYS_TR_NONE, ESYS_TR_NONE, &indexAuth_, &public_, &nv);
    if (rc == TSS2_RC_SUCCESS) Esys_TR_Close(esys, &nv);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  uint32_t authHandle_;
  Auth hierarchyAuth_;
  TPM2B_AUTH indexAuth_ = {};
  TPM2B_NV_PUBLIC public_ = {};
};

class NvUndefineWorker : public TpmWorker {
 public:
  NvUndefineWorker(Napi::Env env, Context* ctx, uint32_t authHandle, Auth hierarchyAuth, uint32_t index)
      : TpmWorker(env, ctx, "NV_UndefineSpace"),
        authHandle_(authHandle),
        hierarchyAuth_(std::move(hierarchyAuth)),
        index_(index) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR hier = ESYS_TR_NONE;
    ESYS_TR nv = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = scope.Resolve(authHandle_, &hier);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Resolve(index_, &nv);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(hier, hierarchyAuth_, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    // On success ESYS frees the index's ESYS_TR; the scope then closes a stale id (ignored).
    return Esys_NV_UndefineSpace(esys, hier, nv, session, ESYS_TR_NONE, ESYS_TR_NONE);
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  uint32_t authHandle_;
  Auth hierarchyAuth_;
  uint32_t index_;
};

class NvReadWorker : public TpmWorker {
 public:
  NvReadWorker(Napi::Env env, Context* ctx, uint32_t authHandle, Auth auth, uint32_t index, uint32_t size,
               uint32_t offset)
      : TpmWorker(env, ctx, "NV_Read"), authHandle_(authHandle), auth_(std::move(auth)), index_(index), size_(size),
        offset_(offset) {
    if (size > 0xffff || offset > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR authTr = ESYS_TR_NONE;
    ESYS_TR nv = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = ResolveNv(&scope, authHandle_, auth_, index_, &authTr, &nv, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_MAX_NV_BUFFER* data = nullptr;
    rc = Esys_NV_Read(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE, static_cast<UINT16>(size_),
                      static_cast<UINT16>(offset_), &data);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal, data, &data_);
    Esys_Free(data);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return ToBuffer(env, data_); }
  uint32_t authHandle_;
  Auth auth_;
  uint32_t index_;
  uint32_t size_;
  uint32_t offset_;
  Bytes data_;
};

// NV_Write, NV_Increment and NV_Extend share the handle and auth plumbing.
class NvUpdateWorker : public TpmWorker {
 public:
  enum class Kind { kWrite, kIncrement, kExtend };
  NvUpdateWorker(Napi::Env env, Context* ctx, Kind kind, uint32_t authHandle, Auth auth, uint32_t index,
                 const Bytes& data, uint32_t offset)
      : TpmWorker(env, ctx, kind == Kind::kWrite ? "NV_Write" : kind == Kind::kIncrement ? "NV_Increment" : "NV_Extend"),
        kind_(kind),
        authHandle_(authHandle),
        auth_(std::move(auth)),
        index_(index),
        offset_(offset) {
    Fail(FillTpm2b(data, &data_));
    if (offset > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR authTr = ESYS_TR_NONE;
    ESYS_TR nv = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = ResolveNv(&scope, authHandle_, auth_, index_, &authTr, &nv, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    switch (kind_) {
      case Kind::kWrite:
        return Esys_NV_Write(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE, &data_,
                             static_cast<UINT16>(offset_));
      case Kind::kIncrement:
        return Esys_NV_Increment(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE);
      case Kind::kExtend:
        return Esys_NV_Extend(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE, &data_);
    }
    return TSS2_ESYS_RC_BAD_VALUE;
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  Kind kind_;
  uint32_t authHandle_;
  Auth auth_;
  uint32_t index_;
  uint32_t offset_;
  TPM2B_MAX_NV_BUFFER data_ = {};
};

class NvReadPublicWorker : public TpmWorker {
 public:
  NvReadPublicWorker(Napi::Env env, Context* ctx, uint32_t index) : TpmWorker(env, ctx, "NV_ReadPublic"), index_(index) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR nv = ESYS_TR_NONE;
    TSS2_RC rc = scope.Resolve(index_, &nv);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_NV_PUBLIC* pub = nullptr;
    TPM2B_NAME* name = nullptr;
    rc = Esys_NV_ReadPublic(esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_NV_PUBLIC_Marshal, pub, &public_);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_NAME_Marshal, name, &name_);
    Esys_Free(pub);
    Esys_Free(name);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("public", ToBuffer(env, public_));
    o.Set("name", ToBuffer(env, name_));
    return o;
  }
  uint32_t index_;
  Bytes public_;
  Bytes name_;
};

// nvDefine(ctx, authHandle, hierarchyAuth, indexAuth: Uint8Array, TPM2B_NV_PUBLIC)
Napi::Value NvDefine(const Napi::CallbackInfo& info) {
  return (new NvDefineWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "authHandle"),
                             AuthArg(info, 2, "hierarchyAuth"), BytesArg(info, 3, "indexAuth"),
                             BytesArg(info, 4, "public")))
      ->Start();
}
// nvUndefine(ctx, authHandle, hierarchyAuth, index)
Napi::Value NvUndefine(const Napi::CallbackInfo& info) {
  return (new NvUndefineWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "authHandle"),
                               AuthArg(info, 2, "hierarchyAuth"), U32Arg(info, 3, "index")))
      ->Start();
}
// nvRead(ctx, authHandle, auth, index, size, offset) -> TPM2B_MAX_NV_BUFFER
Napi::Value NvRead(const Napi::CallbackInfo& info) {
  return (new NvReadWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "auth"),
                           U32Arg(info, 3, "index"), U32Arg(info, 4, "size"), U32Arg(info, 5, "offset")))
      ->Start();
}
// nvWrite(ctx, authHandle, auth, index, data: Uint8Array, offset)
Napi::Value NvWrite(const Napi::CallbackInfo& info) {
  return (new NvUpdateWorker(info.Env(), ContextArg(info, 0), NvUpdateWorker::Kind::kWrite,
                             U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "auth"), U32Arg(info, 3, "index"),
                             BytesArg(info, 4, "data"), U32Arg(info, 5, "offset")))
      ->Start();
}
// nvIncrement(ctx, authHandle, auth, index)
Napi::Value NvIncrement(const Napi::CallbackInfo& info) {
  return (new NvUpdateWorker(info.Env(), ContextArg(info, 0), NvUpdateWorker::Kind::kIncrement,
                             U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "auth"), U32Arg(info, 3, "index"),
                             Bytes(), 0))
      ->Start();
}
// nvExtend(ctx, authHandle, auth, index, data: Uint8Array)
Napi::Value NvExtend(const Napi::CallbackInfo& info) {
  return (new NvUpdateWorker(info.Env(), ContextArg(info, 0), NvUpdateWorker::Kind::kExtend,
                             U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "auth"), U32Arg(info, 3, "index"),
                             BytesArg(info, 4, "data"), 0))
      ->Start();
}
// nvReadPublic(ctx, index) -> {public: TPM2B_NV_PUBLIC, name: TPM2B_NAME}
Napi::Value NvReadPublic(const Napi::CallbackInfo& info) {
  return (new NvReadPublicWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "index")))->Start();
}

}  // namespace

void RegisterNv(Napi::Env env, Napi::Object exports) {
  exports.Set("nvDefine", Napi::Function::New(env, NvDefine, "nvDefine"));
  exports.Set("nvUndefine", Napi::Function::New(env, NvUndefine, "nvUndefine"));
  exports.Set("nvRead", Napi::Function::New(env, NvRead, "nvRead"));
  exports.Set("nvWrite", Napi::Function::New(env, NvWrite, "nvWrite"));
  exports.Set("nvIncrement", Napi::Function::New(env, NvIncrement, "nvIncrement"));
  exports.Set("nvExtend", Napi::Function::New(env, NvExtend, "nvExtend"));
  exports.Set("nvReadPublic", Napi::Function::New(env, NvReadPublic, "nvReadPublic"));
}

}  // namespace grantor
