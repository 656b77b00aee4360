// Objects: CreatePrimary, Create, Load, FlushContext, EvictControl, ReadPublic.
#include "common.h"

namespace grantor {
namespace {

// CreatePrimary (the parent is a hierarchy), Create and Load: an object under a parent that
// is resolved and authorised. `pub` is the template, or for Load the object's public beside
// its `priv`; the new object's userAuth is wiped when the worker goes. CreatePrimary and Load
// leave the object loaded and answer {handle, name} (CreatePrimary also its public); Create
// answers {private, public}.
class ObjectWorker : public TpmWorker {
 public:
  enum class Kind { kCreatePrimary, kCreate, kLoad };
  ObjectWorker(Napi::Env env, Context* ctx, Kind kind, AuthHandle parent, const Bytes& pub, const Bytes& priv,
               const Secret& userAuth)
      : TpmWorker(env, ctx, kCommands[static_cast<int>(kind)]), kind_(kind), parent_(std::move(parent)) {
    Fail(UnmarshalAll(Tss2_MU_TPM2B_PUBLIC_Unmarshal, pub, &inPublic_));
    if (kind == Kind::kLoad) Fail(UnmarshalAll(Tss2_MU_TPM2B_PRIVATE_Unmarshal, priv, &inPrivate_));
    Fail(FillTpm2b(userAuth.bytes, &sensitive_.sensitive.userAuth));
  }
  ~ObjectWorker() override { WipeTpm2b(&sensitive_.sensitive.userAuth); }

 private:
  static constexpr const char* kCommands[] = {"CreatePrimary", "Create", "Load"};

  TSS2_RC Run(ESYS_CONTEXT* esys) override {
    HandleScope scope(esys);
    Authorized parent;
    ESYS_TR obj = ESYS_TR_NONE;
    TSS2_RC rc = scope.Authorize(parent_, &parent);
    if (rc != TSS2_RC_SUCCESS) return rc;
    if (kind_ == Kind::kLoad) {
      rc = Esys_Load(esys, parent.tr, parent.session, ESYS_TR_NONE, ESYS_TR_NONE, &inPrivate_, &inPublic_, &obj);
    } else {
      rc = Create(esys, parent, &obj);
    }
    if (obj == ESYS_TR_NONE) return rc;
    // The new object's {handle, name}; its ESYS_TR is forgotten (the object stays loaded and
    // the caller flushes it by handle), or flushed when anything failed, so no slot leaks.
    TPM2B_NAME* name = nullptr;
    if (rc == TSS2_RC_SUCCESS) rc = Esys_TR_GetTpmHandle(esys, obj, &handle_);
    if (rc == TSS2_RC_SUCCESS) rc = Esys_TR_GetName(esys, obj, &name);
    rc = Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, name, &name_);
    if (rc != TSS2_RC_SUCCESS) FlushOrClose(esys, &obj);
    return rc == TSS2_RC_SUCCESS ? Esys_TR_Close(esys, &obj) : rc;
  }

  TSS2_RC Create(ESYS_CONTEXT* esys, const Authorized& parent, ESYS_TR* obj) {
    TPM2B_DATA outside = {};
    TPML_PCR_SELECTION creationPcr = {};
    TPM2B_CREATION_DATA* creationData = nullptr;
    TPM2B_DIGEST* creationHash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    TPM2B_PUBLIC* outPublic = nullptr;
    TSS2_RC rc;
    if (kind_ == Kind::kCreatePrimary) {
      rc = Esys_CreatePrimary(esys, parent.tr, parent.session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive_, &inPublic_,
                              &outside, &creationPcr, obj, &outPublic, &creationData, &creationHash, &ticket);
    } else {
      TPM2B_PRIVATE* outPrivate = nullptr;
      rc = Esys_Create(esys, parent.tr, parent.session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive_, &inPublic_, &outside,
                       &creationPcr, &outPrivate, &outPublic, &creationData, &creationHash, &ticket);
      rc = Keep(rc, Tss2_MU_TPM2B_PRIVATE_Marshal, outPrivate, &private_);
    }
    rc = Keep(rc, Tss2_MU_TPM2B_PUBLIC_Marshal, outPublic, &public_);
    // The creation data and ticket: neither command answers with them.
    Esys_Free(creationData);
    Esys_Free(creationHash);
    Esys_Free(ticket);
    return rc;
  }

  Napi::Value Result(Napi::Env env) override {
    if (kind_ == Kind::kCreate) return Fields(env, {{"private", &private_}, {"public", &public_}});
    if (kind_ == Kind::kLoad) return Fields(env, {{"name", &name_}}, {{"handle", handle_}});
    return Fields(env, {{"public", &public_}, {"name", &name_}}, {{"handle", handle_}});
  }

  Kind kind_;
  AuthHandle parent_;
  TPM2B_PUBLIC inPublic_ = {};
  TPM2B_PRIVATE inPrivate_ = {};
  TPM2B_SENSITIVE_CREATE sensitive_ = {};
  Bytes private_;
  Bytes public_;
  TPM2_HANDLE handle_ = 0;
  Bytes name_;
};

}  // namespace

void RegisterKeys(Napi::Env env, Napi::Object exports) {
  // createPrimary(ctx, hierarchy, hierarchyAuth, TPM2B_PUBLIC template, userAuth: Uint8Array)
  //   -> {handle, public: TPM2B_PUBLIC, name: TPM2B_NAME}
  Export(env, exports, "createPrimary", [](const Napi::CallbackInfo& info) {
    return StartWorker<ObjectWorker>(info, ObjectWorker::Kind::kCreatePrimary,
                                     AuthHandleArg(info, 1, "hierarchy", "hierarchyAuth"),
                                     BytesArg(info, 3, "template"), Bytes(), SecretArg(info, 4, "userAuth"));
  });
  // create(ctx, parent, parentAuth, TPM2B_PUBLIC template, userAuth) -> {private, public}
  Export(env, exports, "create", [](const Napi::CallbackInfo& info) {
    return StartWorker<ObjectWorker>(info, ObjectWorker::Kind::kCreate, AuthHandleArg(info, 1, "parent", "parentAuth"),
                                     BytesArg(info, 3, "template"), Bytes(), SecretArg(info, 4, "userAuth"));
  });
  // load(ctx, parent, parentAuth, TPM2B_PRIVATE, TPM2B_PUBLIC) -> {handle, name}
  Export(env, exports, "load", [](const Napi::CallbackInfo& info) {
    return StartWorker<ObjectWorker>(info, ObjectWorker::Kind::kLoad, AuthHandleArg(info, 1, "parent", "parentAuth"),
                                     BytesArg(info, 4, "public"), BytesArg(info, 3, "private"), Secret());
  });
  // flush(ctx, handle)
  Export(env, exports, "flush", [](const Napi::CallbackInfo& info) {
    uint32_t handle = U32Arg(info, 1, "handle");
    return Call(info, "FlushContext", {}, [handle](ESYS_CONTEXT* esys, Bytes*) {
      ESYS_TR tr = ESYS_TR_NONE;
      TSS2_RC rc = Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
      return rc == TSS2_RC_SUCCESS ? FlushOrClose(esys, &tr) : rc;
    });
  });
  // evictControl(ctx, ownerAuth, object, persistentHandle)
  Export(env, exports, "evictControl", [](const Napi::CallbackInfo& info) {
    uint32_t persistent = U32Arg(info, 3, "persistentHandle");
    auto run = [persistent](ESYS_CONTEXT* esys, const Authorized& owner, ESYS_TR obj, Bytes*) {
      ESYS_TR out = ESYS_TR_NONE;
      TSS2_RC rc = Esys_EvictControl(esys, owner.tr, obj, owner.session, ESYS_TR_NONE, ESYS_TR_NONE, persistent, &out);
      if (rc == TSS2_RC_SUCCESS && out != ESYS_TR_NONE) Esys_TR_Close(esys, &out);
      return rc;
    };
    return CallAuthorizedOn(info, "EvictControl", AuthHandle{TPM2_RH_OWNER, AuthArg(info, 1, "ownerAuth")},
                            U32Arg(info, 2, "object"), {}, run);
  });
  // readPublic(ctx, handle) -> {public: TPM2B_PUBLIC, name: TPM2B_NAME, qualifiedName: TPM2B_NAME}
  Export(env, exports, "readPublic", [](const Napi::CallbackInfo& info) {
    auto run = [](ESYS_CONTEXT* esys, ESYS_TR obj, Bytes* out) {
      TPM2B_PUBLIC* pub = nullptr;
      TPM2B_NAME* name = nullptr;
      TPM2B_NAME* qualified = nullptr;
      TSS2_RC rc = Esys_ReadPublic(esys, obj, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name, &qualified);
      rc = Keep(rc, Tss2_MU_TPM2B_PUBLIC_Marshal, pub, &out[0]);
      rc = Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, name, &out[1]);
      return Keep(rc, Tss2_MU_TPM2B_NAME_Marshal, qualified, &out[2]);
    };
    return CallOn(info, "handle", "ReadPublic", {"public", "name", "qualifiedName"}, run);
  });
}

}  // namespace grantor
