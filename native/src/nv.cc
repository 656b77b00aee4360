// NV indices: DefineSpace, UndefineSpace, Read, Write, Increment, Extend, ReadPublic.
// authHandle is the hierarchy (owner/platform) or the index itself, per its attributes.
// Read, Write, Increment and Extend use the context's kept NV handles; ReadPublic always
// asks the TPM (it is how callers check an index's name).
#include "common.h"

namespace grantor {
namespace {

// NV_Read, NV_Write, NV_Increment and NV_Extend: (ctx, authHandle, auth, index, ...) on the
// index, authorised through authHandle.
template <typename F>
Napi::Value CallNv(const Napi::CallbackInfo& info, const char* command, std::vector<const char*> fields, F run) {
  return CallAuthorizedOn(info, command, AuthHandleArg(info, 1, "authHandle", "auth"), U32Arg(info, 3, "index"),
                          std::move(fields), std::move(run));
}

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
    auto run = [](ESYS_CONTEXT* esys, const Authorized& hier, ESYS_TR nv, Bytes*) {
      // On success ESYS frees the index's ESYS_TR; the scope then closes a stale id (ignored).
      return Esys_NV_UndefineSpace(esys, hier.tr, nv, hier.session, ESYS_TR_NONE, ESYS_TR_NONE);
    };
    return CallAuthorizedOn(info, "NV_UndefineSpace", AuthHandleArg(info, 1, "authHandle", "hierarchyAuth"),
                            U32Arg(info, 3, "index"), {}, run);
  });
  // nvRead(ctx, authHandle, auth, index, size, offset) -> TPM2B_MAX_NV_BUFFER
  Export(env, exports, "nvRead", [](const Napi::CallbackInfo& info) {
    uint32_t size = U32Arg(info, 4, "size");
    uint32_t offset = U32Arg(info, 5, "offset");
    auto run = [size, offset](ESYS_CONTEXT* esys, const Authorized& auth, ESYS_TR nv, Bytes* out) {
      if (size > 0xffff || offset > 0xffff) return static_cast<TSS2_RC>(TSS2_ESYS_RC_BAD_VALUE);
      TPM2B_MAX_NV_BUFFER* read = nullptr;
      TSS2_RC rc = Esys_NV_Read(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE,
                                static_cast<UINT16>(size), static_cast<UINT16>(offset), &read);
      return Keep(rc, Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal, read, out);
    };
    return CallNv(info, "NV_Read", {nullptr}, run);
  });
  // nvWrite(ctx, authHandle, auth, index, data: Uint8Array, offset)
  Export(env, exports, "nvWrite", [](const Napi::CallbackInfo& info) {
    Bytes data = BytesArg(info, 4, "data");
    uint32_t offset = U32Arg(info, 5, "offset");
    auto run = [data, offset](ESYS_CONTEXT* esys, const Authorized& auth, ESYS_TR nv, Bytes*) {
      TPM2B_MAX_NV_BUFFER buffer = {};
      TSS2_RC rc = offset > 0xffff ? TSS2_ESYS_RC_BAD_VALUE : FillTpm2b(data, &buffer);
      if (rc != TSS2_RC_SUCCESS) return rc;
      return Esys_NV_Write(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE, &buffer,
                           static_cast<UINT16>(offset));
    };
    return CallNv(info, "NV_Write", {}, run);
  });
  // nvIncrement(ctx, authHandle, auth, index)
  Export(env, exports, "nvIncrement", [](const Napi::CallbackInfo& info) {
    return CallNv(info, "NV_Increment", {}, [](ESYS_CONTEXT* esys, const Authorized& auth, ESYS_TR nv, Bytes*) {
      return Esys_NV_Increment(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE);
    });
  });
  // nvExtend(ctx, authHandle, auth, index, data: Uint8Array)
  Export(env, exports, "nvExtend", [](const Napi::CallbackInfo& info) {
    Bytes data = BytesArg(info, 4, "data");
    return CallNv(info, "NV_Extend", {}, [data](ESYS_CONTEXT* esys, const Authorized& auth, ESYS_TR nv, Bytes*) {
      TPM2B_MAX_NV_BUFFER buffer = {};
      TSS2_RC rc = FillTpm2b(data, &buffer);
      if (rc != TSS2_RC_SUCCESS) return rc;
      return Esys_NV_Extend(esys, auth.tr, nv, auth.session, ESYS_TR_NONE, ESYS_TR_NONE, &buffer);
    });
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
