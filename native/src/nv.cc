// NV indices: DefineSpace, UndefineSpace, Read, Write, Increment, Extend, ReadPublic.
// authHandle is the hierarchy (owner/platform) or the index itself, per its attributes.
// Read, Write, Increment and Extend use the context's kept NV handles; ReadPublic always
// asks the TPM (it is how callers check an index's name).
#include "common.h"

namespace grantor {
namespace {

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
    TSS2_RC rc = scope.Authorized(authHandle_, hierarchyAuth_, &hier, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    ESYS_TR nv = ESYS_TR_NONE;
    rc = Esys_NV_DefineSpace(esys, hier, session, ESYS_TR_NONE, ESYS_TR_NONE, &indexAuth_, &public_, &nv);
    if (rc == TSS2_RC_SUCCESS) Esys_TR_Close(esys, &nv);
    return rc;
  }
  uint32_t authHandle_;
  Auth hierarchyAuth_;
  TPM2B_AUTH indexAuth_ = {};
  TPM2B_NV_PUBLIC public_ = {};
};

// NV_Read, NV_Write, NV_Increment and NV_Extend share the handle and auth plumbing.
class NvWorker : public TpmWorker {
 public:
  enum class Kind { kRead, kWrite, kIncrement, kExtend };
  NvWorker(Napi::Env env, Context* ctx, Kind kind, uint32_t authHandle, Auth auth, uint32_t index, const Bytes& data,
           uint32_t size, uint32_t offset)
      : TpmWorker(env, ctx, kCommands[static_cast<int>(kind)]),
        kind_(kind),
        authHandle_(authHandle),
        auth_(std::move(auth)),
        index_(index),
        size_(size),
        offset_(offset) {
    Fail(FillTpm2b(data, &data_));
    if (size > 0xffff || offset > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  static constexpr const char* kCommands[] = {"NV_Read", "NV_Write", "NV_Increment", "NV_Extend"};

  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR authTr = ESYS_TR_NONE;
    ESYS_TR nv = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = scope.AuthorizedNv(authHandle_, auth_, index_, &authTr, &nv, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    auto offset = static_cast<UINT16>(offset_);
    switch (kind_) {
      case Kind::kRead: {
        TPM2B_MAX_NV_BUFFER* read = nullptr;
        rc = Esys_NV_Read(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE, static_cast<UINT16>(size_), offset,
                          &read);
        return Keep(rc, Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal, read, &read_);
      }
      case Kind::kWrite:
        return Esys_NV_Write(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE, &data_, offset);
      case Kind::kIncrement:
        return Esys_NV_Increment(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE);
      case Kind::kExtend:
        return Esys_NV_Extend(esys, authTr, nv, session, ESYS_TR_NONE, ESYS_TR_NONE, &data_);
    }
    return TSS2_ESYS_RC_BAD_VALUE;
  }
  Napi::Value Result(Napi::Env env) override { return kind_ == Kind::kRead ? ToBuffer(env, read_) : env.Undefined(); }
  Kind kind_;
  uint32_t authHandle_;
  Auth auth_;
  uint32_t index_;
  uint32_t size_;
  uint32_t offset_;
  TPM2B_MAX_NV_BUFFER data_ = {};
  Bytes read_;
};

}  // namespace

void RegisterNv(Napi::Env env, Napi::Object exports) {
  // nvDefine(ctx, authHandle, hierarchyAuth, indexAuth: Uint8Array, TPM2B_NV_PUBLIC)
  Export(env, exports, "nvDefine", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvDefineWorker>(info, U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "hierarchyAuth"),
                                       BytesArg(info, 3, "indexAuth"), BytesArg(info, 4, "public"));
  });
  // nvUndefine(ctx, authHandle, hierarchyAuth, index)
  Export(env, exports, "nvUndefine", [](const Napi::CallbackInfo& info) {
    uint32_t authHandle = U32Arg(info, 1, "authHandle");
    Auth hierarchyAuth = AuthArg(info, 2, "hierarchyAuth");
    uint32_t index = U32Arg(info, 3, "index");
    return Call(info, "NV_UndefineSpace", {},
                [authHandle, auth = std::move(hierarchyAuth), index](ESYS_CONTEXT* esys, Bytes*) {
                  HandleScope scope(esys);
                  ESYS_TR hier = ESYS_TR_NONE;
                  ESYS_TR nv = ESYS_TR_NONE;
                  ESYS_TR session = ESYS_TR_NONE;
                  TSS2_RC rc = scope.Authorized(authHandle, auth, &hier, &session);
                  if (rc == TSS2_RC_SUCCESS) rc = scope.Resolve(index, &nv);
                  if (rc != TSS2_RC_SUCCESS) return rc;
                  // On success ESYS frees the index's ESYS_TR; the scope then closes a stale id (ignored).
                  return Esys_NV_UndefineSpace(esys, hier, nv, session, ESYS_TR_NONE, ESYS_TR_NONE);
                });
  });
  // nvRead(ctx, authHandle, auth, index, size, offset) -> TPM2B_MAX_NV_BUFFER
  Export(env, exports, "nvRead", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kRead, U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "auth"),
                                 U32Arg(info, 3, "index"), Bytes(), U32Arg(info, 4, "size"), U32Arg(info, 5, "offset"));
  });
  // nvWrite(ctx, authHandle, auth, index, data: Uint8Array, offset)
  Export(env, exports, "nvWrite", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kWrite, U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "auth"),
                                 U32Arg(info, 3, "index"), BytesArg(info, 4, "data"), 0u, U32Arg(info, 5, "offset"));
  });
  // nvIncrement(ctx, authHandle, auth, index)
  Export(env, exports, "nvIncrement", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kIncrement, U32Arg(info, 1, "authHandle"),
                                 AuthArg(info, 2, "auth"), U32Arg(info, 3, "index"), Bytes(), 0u, 0u);
  });
  // nvExtend(ctx, authHandle, auth, index, data: Uint8Array)
  Export(env, exports, "nvExtend", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kExtend, U32Arg(info, 1, "authHandle"), AuthArg(info, 2, "auth"),
                                 U32Arg(info, 3, "index"), BytesArg(info, 4, "data"), 0u, 0u);
  });
  // nvReadPublic(ctx, index) -> {public: TPM2B_NV_PUBLIC, name: TPM2B_NAME}
  Export(env, exports, "nvReadPublic", [](const Napi::CallbackInfo& info) {
    uint32_t index = U32Arg(info, 1, "index");
    return Call(info, "NV_ReadPublic", {"public", "name"}, [index](ESYS_CONTEXT* esys, Bytes* out) {
      HandleScope scope(esys);
      ESYS_TR nv = ESYS_TR_NONE;
      TSS2_RC rc = scope.Resolve(index, &nv);
      if (rc != TSS2_RC_SUCCESS) return rc;
      TPM2B_NV_PUBLIC* pub = nullptr;
      TPM2B_NAME* name = nullptr;
      rc = Esys_NV_ReadPublic(esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name);
      rc = Keep(rc, Tss2_MU_TPM2B_NV_PUBLIC_Marshal, pub, &out[0]);
      return Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, name, &out[1]);
    });
  });
}

}  // namespace grantor
