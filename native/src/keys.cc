// Objects: CreatePrimary, Create, Load, FlushContext, EvictControl, ReadPublic.
#include "common.h"

namespace grantor {
namespace {

// Resolves {handle, name} of a freshly loaded object and forgets its ESYS_TR (the TPM
// object stays loaded; the caller flushes it by handle). Flushed when describing it fails,
// so no slot leaks.
TSS2_RC DescribeLoaded(ESYS_CONTEXT* esys, ESYS_TR* tr, TPM2_HANDLE* handle, Bytes* name) {
  TSS2_RC rc = Esys_TR_GetTpmHandle(esys, *tr, handle);
  TPM2B_NAME* n = nullptr;
  if (rc == TSS2_RC_SUCCESS) rc = Esys_TR_GetName(esys, *tr, &n);
  rc = Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, n, name);
  if (rc != TSS2_RC_SUCCESS) {
    FlushOrClose(esys, tr);
    return rc;
  }
  return Esys_TR_Close(esys, tr);
}

Napi::Object LoadedResult(Napi::Env env, TPM2_HANDLE handle, const Bytes& pub, const Bytes& name) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("handle", Napi::Number::New(env, handle));
  if (!pub.empty()) o.Set("public", ToBuffer(env, pub));
  o.Set("name", ToBuffer(env, name));
  return o;
}

// CreatePrimary (`primary`: the parent is a hierarchy; the object stays loaded) and Create:
// a template and the new object's userAuth under a parent that is resolved and authorised;
// the userAuth is wiped when the worker goes.
class CreateObjectWorker : public TpmWorker {
 public:
  CreateObjectWorker(Napi::Env env, Context* ctx, bool primary, uint32_t parent, Auth parentAuth, const Bytes& tmpl,
                     Bytes userAuth)
      : TpmWorker(env, ctx, primary ? "CreatePrimary" : "Create"),
        primary_(primary),
        parent_(parent),
        parentAuth_(std::move(parentAuth)) {
    Fail(UnmarshalAll(Tss2_MU_TPM2B_PUBLIC_Unmarshal, tmpl, &template_));
    Fail(FillTpm2b(userAuth, &sensitive_.sensitive.userAuth));
    Wipe(&userAuth);
  }
  ~CreateObjectWorker() override { WipeTpm2b(&sensitive_.sensitive.userAuth); }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR parent = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorized(parent_, parentAuth_, &parent, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_DATA outside = {};
    TPML_PCR_SELECTION creationPcr = {};
    TPM2B_CREATION_DATA* creationData = nullptr;
    TPM2B_DIGEST* creationHash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    TPM2B_PUBLIC* outPublic = nullptr;
    ESYS_TR obj = ESYS_TR_NONE;
    if (primary_) {
      rc = Esys_CreatePrimary(esys, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive_, &template_, &outside,
                              &creationPcr, &obj, &outPublic, &creationData, &creationHash, &ticket);
    } else {
      TPM2B_PRIVATE* outPrivate = nullptr;
      rc = Esys_Create(esys, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive_, &template_, &outside,
                       &creationPcr, &outPrivate, &outPublic, &creationData, &creationHash, &ticket);
      rc = Keep(rc, Tss2_MU_TPM2B_PRIVATE_Marshal, outPrivate, &private_);
    }
    rc = Keep(rc, Tss2_MU_TPM2B_PUBLIC_Marshal, outPublic, &public_);
    // The creation data and ticket: neither command answers with them.
    Esys_Free(creationData);
    Esys_Free(creationHash);
    Esys_Free(ticket);
    if (obj == ESYS_TR_NONE) return rc;
    if (rc != TSS2_RC_SUCCESS) {
      FlushOrClose(esys, &obj);
      return rc;
    }
    return DescribeLoaded(esys, &obj, &handle_, &name_);
  }
  Napi::Value Result(Napi::Env env) override {
    if (primary_) return LoadedResult(env, handle_, public_, name_);
    return Fields(env, {{"private", &private_}, {"public", &public_}});
  }

  bool primary_;
  uint32_t parent_;
  Auth parentAuth_;
  TPM2B_PUBLIC template_ = {};
  TPM2B_SENSITIVE_CREATE sensitive_ = {};
  Bytes private_;
  Bytes public_;
  TPM2_HANDLE handle_ = 0;
  Bytes name_;
};

class LoadWorker : public TpmWorker {
 public:
  LoadWorker(Napi::Env env, Context* ctx, uint32_t parent, Auth parentAuth, const Bytes& priv, const Bytes& pub)
      : TpmWorker(env, ctx, "Load"), parent_(parent), parentAuth_(std::move(parentAuth)) {
    Fail(UnmarshalAll(Tss2_MU_TPM2B_PRIVATE_Unmarshal, priv, &private_));
    Fail(UnmarshalAll(Tss2_MU_TPM2B_PUBLIC_Unmarshal, pub, &public_));
  }

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR parent = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorized(parent_, parentAuth_, &parent, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    ESYS_TR obj = ESYS_TR_NONE;
    rc = Esys_Load(esys, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, &private_, &public_, &obj);
    return rc == TSS2_RC_SUCCESS ? DescribeLoaded(esys, &obj, &handle_, &name_) : rc;
  }
  Napi::Value Result(Napi::Env env) override { return LoadedResult(env, handle_, Bytes(), name_); }

  uint32_t parent_;
  Auth parentAuth_;
  TPM2B_PRIVATE private_ = {};
  TPM2B_PUBLIC public_ = {};
  TPM2_HANDLE handle_ = 0;
  Bytes name_;
};

}  // namespace

void RegisterKeys(Napi::Env env, Napi::Object exports) {
  // createPrimary(ctx, hierarchy, hierarchyAuth, TPM2B_PUBLIC template, userAuth: Uint8Array)
  //   -> {handle, public: TPM2B_PUBLIC, name: TPM2B_NAME}
  Export(env, exports, "createPrimary", [](const Napi::CallbackInfo& info) {
    return StartWorker<CreateObjectWorker>(info, true, U32Arg(info, 1, "hierarchy"), AuthArg(info, 2, "hierarchyAuth"),
                                            BytesArg(info, 3, "template"), BytesArg(info, 4, "userAuth"));
  });
  // create(ctx, parent, parentAuth, TPM2B_PUBLIC template, userAuth) -> {private, public}
  Export(env, exports, "create", [](const Napi::CallbackInfo& info) {
    return StartWorker<CreateObjectWorker>(info, false, U32Arg(info, 1, "parent"), AuthArg(info, 2, "parentAuth"),
                                     BytesArg(info, 3, "template"), BytesArg(info, 4, "userAuth"));
  });
  // load(ctx, parent, parentAuth, TPM2B_PRIVATE, TPM2B_PUBLIC) -> {handle, name}
  Export(env, exports, "load", [](const Napi::CallbackInfo& info) {
    return StartWorker<LoadWorker>(info, U32Arg(info, 1, "parent"), AuthArg(info, 2, "parentAuth"),
                                   BytesArg(info, 3, "private"), BytesArg(info, 4, "public"));
  });
  // flush(ctx, handle)
  Export(env, exports, "flush", [](const Napi::CallbackInfo& info) {
    uint32_t handle = U32Arg(info, 1, "handle");
    return Call(info, "FlushContext", {}, [handle](ESYS_CONTEXT* esys, Bytes*) {
      ESYS_TR tr = ESYS_TR_NONE;
      TSS2_RC rc = Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
      if (rc != TSS2_RC_SUCCESS) return rc;
      rc = Esys_FlushContext(esys, tr);  // frees tr on success
      if (rc != TSS2_RC_SUCCESS) Esys_TR_Close(esys, &tr);
      return rc;
    });
  });
  // evictControl(ctx, ownerAuth, object, persistentHandle)
  Export(env, exports, "evictControl", [](const Napi::CallbackInfo& info) {
    Auth ownerAuth = AuthArg(info, 1, "ownerAuth");
    uint32_t object = U32Arg(info, 2, "object");
    uint32_t persistent = U32Arg(info, 3, "persistentHandle");
    return Call(info, "EvictControl", {},
                [auth = std::move(ownerAuth), object, persistent](ESYS_CONTEXT* esys, Bytes*) {
                  HandleScope scope(esys);
                  ESYS_TR session = ESYS_TR_NONE;
                  ESYS_TR obj = ESYS_TR_NONE;
                  TSS2_RC rc = scope.Authorize(ESYS_TR_RH_OWNER, auth, &session);
                  if (rc == TSS2_RC_SUCCESS) rc = scope.Resolve(object, &obj);
                  if (rc != TSS2_RC_SUCCESS) return rc;
                  ESYS_TR out = ESYS_TR_NONE;
                  rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, obj, session, ESYS_TR_NONE, ESYS_TR_NONE, persistent,
                                         &out);
                  if (rc == TSS2_RC_SUCCESS && out != ESYS_TR_NONE) Esys_TR_Close(esys, &out);
                  return rc;
                });
  });
  // readPublic(ctx, handle) -> {public: TPM2B_PUBLIC, name: TPM2B_NAME, qualifiedName: TPM2B_NAME}
  Export(env, exports, "readPublic", [](const Napi::CallbackInfo& info) {
    uint32_t handle = U32Arg(info, 1, "handle");
    return Call(info, "ReadPublic", {"public", "name", "qualifiedName"}, [handle](ESYS_CONTEXT* esys, Bytes* out) {
      HandleScope scope(esys);
      ESYS_TR obj = ESYS_TR_NONE;
      TSS2_RC rc = scope.Resolve(handle, &obj);
      if (rc != TSS2_RC_SUCCESS) return rc;
      TPM2B_PUBLIC* pub = nullptr;
      TPM2B_NAME* name = nullptr;
      TPM2B_NAME* qualified = nullptr;
      rc = Esys_ReadPublic(esys, obj, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name, &qualified);
      rc = Keep(rc, Tss2_MU_TPM2B_PUBLIC_Marshal, pub, &out[0]);
      rc = Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, name, &out[1]);
      return Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, qualified, &out[2]);
    });
  });
}

}  // namespace grantor
