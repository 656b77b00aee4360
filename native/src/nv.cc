// NV indices: DefineSpace, UndefineSpace, Read, Write, Increment, Extend, ReadPublic.
// authHandle is the hierarchy (owner/platform) or the index itself, per its attributes.
// Read, Write, Increment and Extend use the context's kept NV handles; ReadPublic always
// asks the TPM (it is how callers check an index's name).
#include "common.h"

namespace grantor {
namespace {

// NV_Read, NV_Write, NV_Increment and NV_Extend share the handle and auth plumbing.
class NvWorker : public TpmWorker {
 public:
  enum class Kind { kRead, kWrite, kIncrement, kExtend };
  NvWorker(Napi::Env env, Context* ctx, Kind kind, AuthHandle authHandle, uint32_t index, const Bytes& data,
           uint32_t size, uint32_t offset)
      : TpmWorker(env, ctx, kCommands[static_cast<int>(kind)]),
        kind_(kind),
        authHandle_(std::move(authHandle)),
        index_(index),
        size_(static_cast<UINT16>(size)),
        offset_(static_cast<UINT16>(offset)) {
    Fail(FillTpm2b(data, &data_));
    if (size > 0xffff || offset > 0xffff) Fail(TSS2_ESYS_RC_BAD_VALUE);
  }

 private:
  static constexpr const char* kCommands[] = {"NV_Read", "NV_Write", "NV_Increment", "NV_Extend"};

  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    Authorized auth;
    ESYS_TR nv = ESYS_TR_NONE;
    TSS2_RC rc = scope.AuthorizeOn(authHandle_, index_, &auth, &nv);
    if (rc != TSS2_RC_SUCCESS) return rc;
    switch (kind_) {
      case Kind::kRead: {
        TPM2B_MAX_NV_BUFFER* read = nullptr;
        rc = Esys_NV_Read(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE, size_, offset_, &read);
        return Keep(rc, Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal, read, &read_);
      }
      case Kind::kWrite:
        return Esys_NV_Write(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE, &data_, offset_);
      case Kind::kIncrement:
        return Esys_NV_Increment(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE);
      case Kind::kExtend:
        return Esys_NV_Extend(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE, &data_);
    }
    return TSS2_ESYS_RC_BAD_VALUE;
  }
  Napi::Value Result(Napi::Env env) override { return kind_ == Kind::kRead ? ToBuffer(env, read_) : env.Undefined(); }
  Kind kind_;
  AuthHandle authHandle_;
  uint32_t index_;
  UINT16 size_;
  UINT16 offset_;
  TPM2B_MAX_NV_BUFFER data_ = {};
  Bytes read_;
};

}  // namespace

void RegisterNv(Napi::Env env, Napi::Object exports) {
  // nvDefine(ctx, authHandle, hierarchyAuth, indexAuth: Uint8Array, TPM2B_NV_PUBLIC)
  Export(env, exports, "nvDefine", [](const Napi::CallbackInfo& info) {
    AuthHandle hierarchy = AuthHandleArg(info, 1, "authHandle", "hierarchyAuth");
    Secret indexAuth = SecretArg(info, 3, "indexAuth");
    Bytes pub = BytesArg(info, 4, "public");
    auto run = [hierarchy = std::move(hierarchy), indexAuth = std::move(indexAuth), pub](ESYS_CONTEXT* esys, Bytes*) {
      TPM2B_AUTH auth = {};
      TPM2B_NV_PUBLIC nvPublic = {};
      HandleScope scope(esys);
      Authorized hier;
      ESYS_TR nv = ESYS_TR_NONE;
      TSS2_RC rc = FillTpm2b(indexAuth.bytes, &auth);
      if (rc == TSS2_RC_SUCCESS) rc = UnmarshalAll(Tss2_MU_TPM2B_NV_PUBLIC_Unmarshal, pub, &nvPublic);
      if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(hierarchy, &hier);
      if (rc == TSS2_RC_SUCCESS) {
        rc = Esys_NV_DefineSpace(esys, hier.tr, hier.session, ESYS_TR_NONE, ESYS_TR_NONE, &auth, &nvPublic, &nv);
      }
      if (rc == TSS2_RC_SUCCESS) Esys_TR_Close(esys, &nv);
      WipeTpm2b(&auth);
      return rc;
    };
    return Call(info, "NV_DefineSpace", {}, std::move(run));
  });
  // nvUndefine(ctx, authHandle, hierarchyAuth, index)
  Export(env, exports, "nvUndefine", [](const Napi::CallbackInfo& info) {
    AuthHandle hierarchy = AuthHandleArg(info, 1, "authHandle", "hierarchyAuth");
    uint32_t index = U32Arg(info, 3, "index");
    return Call(info, "NV_UndefineSpace", {}, [hierarchy = std::move(hierarchy), index](ESYS_CONTEXT* esys, Bytes*) {
      HandleScope scope(esys);
      Authorized hier;
      ESYS_TR nv = ESYS_TR_NONE;
      TSS2_RC rc = scope.AuthorizeOn(hierarchy, index, &hier, &nv);
      if (rc != TSS2_RC_SUCCESS) return rc;
      // On success ESYS frees the index's ESYS_TR; the scope then closes a stale id (ignored).
      return Esys_NV_UndefineSpace(esys, hier.tr, nv, hier.session, ESYS_TR_NONE, ESYS_TR_NONE);
    });
  });
  // nvRead(ctx, authHandle, auth, index, size, offset) -> TPM2B_MAX_NV_BUFFER
  Export(env, exports, "nvRead", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kRead, AuthHandleArg(info, 1, "authHandle", "auth"),
                                 U32Arg(info, 3, "index"), Bytes(), U32Arg(info, 4, "size"), U32Arg(info, 5, "offset"));
  });
  // nvWrite(ctx, authHandle, auth, index, data: Uint8Array, offset)
  Export(env, exports, "nvWrite", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kWrite, AuthHandleArg(info, 1, "authHandle", "auth"),
                                 U32Arg(info, 3, "index"), BytesArg(info, 4, "data"), 0u, U32Arg(info, 5, "offset"));
  });
  // nvIncrement(ctx, authHandle, auth, index)
  Export(env, exports, "nvIncrement", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kIncrement, AuthHandleArg(info, 1, "authHandle", "auth"),
                                 U32Arg(info, 3, "index"), Bytes(), 0u, 0u);
  });
  // nvExtend(ctx, authHandle, auth, index, data: Uint8Array)
  Export(env, exports, "nvExtend", [](const Napi::CallbackInfo& info) {
    return StartWorker<NvWorker>(info, NvWorker::Kind::kExtend, AuthHandleArg(info, 1, "authHandle", "auth"),
                                 U32Arg(info, 3, "index"), BytesArg(info, 4, "data"), 0u, 0u);
  });
  // nvReadPublic(ctx, index) -> {public: TPM2B_NV_PUBLIC, name: TPM2B_NAME}
  Export(env, exports, "nvReadPublic", [](const Napi::CallbackInfo& info) {
    auto run = [](ESYS_CONTEXT* esys, ESYS_TR nv, Bytes* out) {
      TPM2B_NV_PUBLIC* pub = nullptr;
      TPM2B_NAME* name = nullptr;
      TSS2_RC rc = Esys_NV_ReadPublic(esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name);
      rc = Keep(rc, Tss2_MU_TPM2B_NV_PUBLIC_Marshal, pub, &out[0]);
      return Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, name, &out[1]);
    };
    return CallOn(info, "index", "NV_ReadPublic", {"public", "name"}, run);
  });
}

}  // namespace grantor
