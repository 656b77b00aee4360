// Objects: CreatePrimary, Create, Load, FlushContext, EvictControl, ReadPublic.
#include "common.h"

namespace grantor {
namespace {

// Resolves {handle, public, name} for a freshly loaded object and forgets its ESYS_TR
// (the TPM object stays loaded; the caller flushes it by handle).
TSS2_RC DescribeLoaded(ESYS_CONTEXT* esys, ESYS_TR* tr, TPM2_HANDLE* handle, Bytes* name) {
  TSS2_RC rc = Esys_TR_GetTpmHandle(esys, *tr, handle);
  TPM2B_NAME* n = nullptr;
  if (rc == TSS2_RC_SUCCESS) rc = Esys_TR_GetName(esys, *tr, &n);
  if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_NAME_Marshal, n, name);
  Esys_Free(n);
  return rc;
}

// Flushes a just-created object when describing it failed, so no slot leaks.
void Abandon(ESYS_CONTEXT* esys, ESYS_TR* tr) {
  if (Esys_FlushContext(esys, *tr) != TSS2_RC_SUCCESS) Esys_TR_Close(esys, tr);
}

Napi::Object LoadedResult(Napi::Env env, TPM2_HANDLE handle, const Bytes& pub, const Bytes& name) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("handle", Napi::Number::New(env, handle));
  if (!pub.empty()) o.Set("public", ToBuffer(env, pub));
  o.Set("name", ToBuffer(env, name));
  return o;
}

// CreatePrimary and Create: a template and the new object's userAuth under a parent (a
// hierarchy for CreatePrimary) that is resolved and authorised; the userAuth is wiped when
// the worker goes.
class CreateObjectWorker : public TpmWorker {
 protected:
  CreateObjectWorker(Napi::Env env, Context* ctx, const char* command, uint32_t parent, Auth parentAuth,
                     const Bytes& tmpl, Bytes userAuth)
      : TpmWorker(env, ctx, command), parent_(parent), parentAuth_(std::move(parentAuth)) {
    Fail(UnmarshalAll(Tss2_MU_TPM2B_PUBLIC_Unmarshal, tmpl, &template_));
    Fail(FillTpm2b(userAuth, &sensitive_.sensitive.userAuth));
    Wipe(&userAuth);
  }
  ~CreateObjectWorker() override { WipeTpm2b(&sensitive_.sensitive.userAuth); }

  TSS2_RC AuthorizeParent(HandleScope* scope, ESYS_TR* parent, ESYS_TR* session) {
    TSS2_RC rc = scope->Resolve(parent_, parent);
    if (rc == TSS2_RC_SUCCESS) rc = scope->Authorize(*parent, parentAuth_, session);
    return rc;
  }
  // Frees the creation outputs neither command answers with.
  void FreeCreation() {
    Esys_Free(creationData_);
    Esys_Free(creationHash_);
    Esys_Free(ticket_);
    creationData_ = nullptr;
    creationHash_ = nullptr;
    ticket_ = nullptr;
  }

  uint32_t parent_;
  Auth parentAuth_;
  TPM2B_PUBLIC template_ = {};
  TPM2B_SENSITIVE_CREATE sensitive_ = {};
  TPM2B_DATA outside_ = {};
  TPML_PCR_SELECTION creationPcr_ = {};
  TPM2B_CREATION_DATA* creationData_ = nullptr;
  TPM2B_DIGEST* creationHash_ = nullptr;
  TPMT_TK_CREATION* ticket_ = nullptr;
  Bytes public_;
};

class CreatePrimaryWorker : public CreateObjectWorker {
 public:
  CreatePrimaryWorker(Napi::Env env, Context* ctx, uint32_t hierarchy, Auth hierarchyAuth, const Bytes& tmpl,
                      Bytes userAuth)
      : CreateObjectWorker(env, ctx, "CreatePrimary", hierarchy, std::move(hierarchyAuth), tmpl, std::move(userAuth)) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR hier = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = AuthorizeParent(&scope, &hier, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    ESYS_TR obj = ESYS_TR_NONE;
    TPM2B_PUBLIC* outPublic = nullptr;
    rc = Esys_CreatePrimary(esys, hier, session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive_, &template_, &outside_,
                            &creationPcr_, &obj, &outPublic, &creationData_, &creationHash_, &ticket_);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_PUBLIC_Marshal, outPublic, &public_);
    Esys_Free(outPublic);
    FreeCreation();
    if (obj == ESYS_TR_NONE) return rc;
    if (rc == TSS2_RC_SUCCESS) rc = DescribeLoaded(esys, &obj, &handle_, &name_);
    if (rc != TSS2_RC_SUCCESS) {
      Abandon(esys, &obj);
      return rc;
    }
    return Esys_TR_Close(esys, &obj);
  }
  Napi::Value Result(Napi::Env env) override { return LoadedResult(env, handle_, public_, name_); }

  TPM2_HANDLE handle_ = 0;
  Bytes name_;
};

class CreateWorker : public CreateObjectWorker {
 public:
  CreateWorker(Napi::Env env, Context* ctx, uint32_t parent, Auth parentAuth, const Bytes& tmpl, Bytes userAuth)
      : CreateObjectWorker(env, ctx, "Create", parent, std::move(parentAuth), tmpl, std::move(userAuth)) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR parent = ESYS_TR_NONE;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = AuthorizeParent(&scope, &parent, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_PRIVATE* outPrivate = nullptr;
    TPM2B_PUBLIC* outPublic = nullptr;
    rc = Esys_Create(esys, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive_, &template_, &outside_,
                     &creationPcr_, &outPrivate, &outPublic, &creationData_, &creationHash_, &ticket_);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_PRIVATE_Marshal, outPrivate, &private_);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_PUBLIC_Marshal, outPublic, &public_);
    Esys_Free(outPrivate);
    Esys_Free(outPublic);
    FreeCreation();
    return rc;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("private", ToBuffer(env, private_));
    o.Set("public", ToBuffer(env, public_));
    return o;
  }

  Bytes private_;
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
    TSS2_RC rc = scope.Resolve(parent_, &parent);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Authorize(parent, parentAuth_, &session);
    if (rc != TSS2_RC_SUCCESS) return rc;
    ESYS_TR obj = ESYS_TR_NONE;
    rc = Esys_Load(esys, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, &private_, &public_, &obj);
    if (rc != TSS2_RC_SUCCESS) return rc;
    rc = DescribeLoaded(esys, &obj, &handle_, &name_);
    if (rc != TSS2_RC_SUCCESS) {
      Abandon(esys, &obj);
      return rc;
    }
    return Esys_TR_Close(esys, &obj);
  }
  Napi::Value Result(Napi::Env env) override { return LoadedResult(env, handle_, Bytes(), name_); }

  uint32_t parent_;
  Auth parentAuth_;
  TPM2B_PRIVATE private_ = {};
  TPM2B_PUBLIC public_ = {};
  TPM2_HANDLE handle_ = 0;
  Bytes name_;
};

class FlushWorker : public TpmWorker {
 public:
  FlushWorker(Napi::Env env, Context* ctx, uint32_t handle) : TpmWorker(env, ctx, "FlushContext"), handle_(handle) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc = Esys_TR_FromTPMPublic(esys, handle_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
    if (rc != TSS2_RC_SUCCESS) return rc;
    rc = Esys_FlushContext(esys, tr);  // frees tr on success
    if (rc != TSS2_RC_SUCCESS) Esys_TR_Close(esys, &tr);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  uint32_t handle_;
};

class EvictControlWorker : public TpmWorker {
 public:
  EvictControlWorker(Napi::Env env, Context* ctx, Auth ownerAuth, uint32_t object, uint32_t persistent)
      : TpmWorker(env, ctx, "EvictControl"), ownerAuth_(std::move(ownerAuth)), object_(object), persistent_(persistent) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR owner = ESYS_TR_RH_OWNER;
    ESYS_TR session = ESYS_TR_NONE;
    ESYS_TR obj = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorize(owner, ownerAuth_, &session);
    if (rc == TSS2_RC_SUCCESS) rc = scope.Resolve(object_, &obj);
    if (rc != TSS2_RC_SUCCESS) return rc;
    ESYS_TR out = ESYS_TR_NONE;
    rc = Esys_EvictControl(esys, owner, obj, session, ESYS_TR_NONE, ESYS_TR_NONE, persistent_, &out);
    if (rc == TSS2_RC_SUCCESS && out != ESYS_TR_NONE) Esys_TR_Close(esys, &out);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  Auth ownerAuth_;
  uint32_t object_;
  uint32_t persistent_;
};

class ReadPublicWorker : public TpmWorker {
 public:
  ReadPublicWorker(Napi::Env env, Context* ctx, uint32_t handle) : TpmWorker(env, ctx, "ReadPublic"), handle_(handle) {}

 private:
  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    ESYS_TR obj = ESYS_TR_NONE;
    TSS2_RC rc = scope.Resolve(handle_, &obj);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_PUBLIC* pub = nullptr;
    TPM2B_NAME* name = nullptr;
    TPM2B_NAME* qualified = nullptr;
    rc = Esys_ReadPublic(esys, obj, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name, &qualified);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_PUBLIC_Marshal, pub, &public_);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_NAME_Marshal, name, &name_);
    if (rc == TSS2_RC_SUCCESS) rc = MarshalTo(Tss2_MU_TPM2B_NAME_Marshal, qualified, &qualified_);
    Esys_Free(pub);
    Esys_Free(name);
    Esys_Free(qualified);
    return rc;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("public", ToBuffer(env, public_));
    o.Set("name", ToBuffer(env, name_));
    o.Set("qualifiedName", ToBuffer(env, qualified_));
    return o;
  }
  uint32_t handle_;
  Bytes public_;
  Bytes name_;
  Bytes qualified_;
};

// createPrimary(ctx, hierarchy, hierarchyAuth, TPM2B_PUBLIC template, userAuth: Uint8Array)
//   -> {handle, public: TPM2B_PUBLIC, name: TPM2B_NAME}
Napi::Value CreatePrimary(const Napi::CallbackInfo& info) {
  return (new CreatePrimaryWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "hierarchy"),
                                  AuthArg(info, 2, "hierarchyAuth"), BytesArg(info, 3, "template"),
                                  BytesArg(info, 4, "userAuth")))
      ->Start();
}
// create(ctx, parent, parentAuth, TPM2B_PUBLIC template, userAuth) -> {private, public}
Napi::Value Create(const Napi::CallbackInfo& info) {
  return (new CreateWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "parent"), AuthArg(info, 2, "parentAuth"),
                           BytesArg(info, 3, "template"), BytesArg(info, 4, "userAuth")))
      ->Start();
}
// load(ctx, parent, parentAuth, TPM2B_PRIVATE, TPM2B_PUBLIC) -> {handle, name}
Napi::Value Load(const Napi::CallbackInfo& info) {
  return (new LoadWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "parent"), AuthArg(info, 2, "parentAuth"),
                         BytesArg(info, 3, "private"), BytesArg(info, 4, "public")))
      ->Start();
}
// flush(ctx, handle)
Napi::Value Flush(const Napi::CallbackInfo& info) {
  return (new FlushWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "handle")))->Start();
}
// evictControl(ctx, ownerAuth, object, persistentHandle)
Napi::Value EvictControl(const Napi::CallbackInfo& info) {
  return (new EvictControlWorker(info.Env(), ContextArg(info, 0), AuthArg(info, 1, "ownerAuth"),
                                 U32Arg(info, 2, "object"), U32Arg(info, 3, "persistentHandle")))
      ->Start();
}
// readPublic(ctx, handle) -> {public: TPM2B_PUBLIC, name: TPM2B_NAME, qualifiedName: TPM2B_NAME}
Napi::Value ReadPublic(const Napi::CallbackInfo& info) {
  return (new ReadPublicWorker(info.Env(), ContextArg(info, 0), U32Arg(info, 1, "handle")))->Start();
}

}  // namespace

void RegisterKeys(Napi::Env env, Napi::Object exports) {
  exports.Set("createPrimary", Napi::Function::New(env, CreatePrimary, "createPrimary"));
  exports.Set("create", Napi::Function::New(env, Create, "create"));
  exports.Set("load", Napi::Function::New(env, Load, "load"));
  exports.Set("flush", Napi::Function::New(env, Flush, "flush"));
  exports.Set("evictControl", Napi::Function::New(env, EvictControl, "evictControl"));
  exports.Set("readPublic", Napi::Function::New(env, ReadPublic, "readPublic"));
}

}  // namespace grantor
