#!/usr/bin/env bash
# The runtime side of PROTOCOL.md §1-§2 with tpm2-tools, openssl, curl and jq alone.
#   GRANTOR_URL=http://host:port TPM2TOOLS_TCTI=... attester/tpm2-tools-flow.sh enroll NAME
#   GRANTOR_URL=... TPM2TOOLS_TCTI=... attester/tpm2-tools-flow.sh attest [PCRS]
# Works in the current folder: keeps ak.ctx, runtime-id and session-key.pem there.
# PCRS defaults to sha256:0,1,2,3,7. Prints the attestation answer (JSON) on stdout.
set -euo pipefail
url=${GRANTOR_URL:?set GRANTOR_URL}
: "${TPM2TOOLS_TCTI:?set TPM2TOOLS_TCTI}"
export TPM2TOOLS_TCTI
flush() { tpm2_flushcontext -t >/dev/null; tpm2_flushcontext -s >/dev/null; }
post() { # PATH [JSON]
  if [ $# -gt 1 ]; then
    curl -sS --fail-with-body -H 'content-type: application/json' -X POST --data-binary "$2" "$url$1"
  else
    curl -sS --fail-with-body -X POST "$url$1"
  fi
}
b64() { base64 -w0 "$1"; }

case ${1:?usage: tpm2-tools-flow.sh enroll NAME | attest [PCRS]} in
enroll)
  name=${2:?usage: tpm2-tools-flow.sh enroll NAME}
  # 1. EK certificate (NV 0x01c00002) and an AK under the RSA EK (0x81010001).
  tpm2_nvread 0x01c00002 -o ek.der 2>/dev/null
  tpm2_createak -C 0x81010001 -c ak.ctx -G ecc -g sha256 -s ecdsa -u ak.pub -n ak.name >/dev/null
  flush
  # 2. Enroll: the appliance validates the EK certificate and the AK, runs MakeCredential.
  body=$(jq -n --arg name "$name" --arg ek "$(b64 ek.der)" --arg ak "$(b64 ak.pub)" \
    '{name: $name, ekCertificate: $ek, akPublic: $ak}')
  post /v1/runtimes "$body" >enroll.json
  jq -r .runtimeId enroll.json >runtime-id
  # 3. The credential file tpm2_activatecredential reads: BADCC0DE 00000001 || blob || secret.
  { printf '\xba\xdc\xc0\xde\x00\x00\x00\x01'
    jq -r .credentialBlob enroll.json | base64 -d
    jq -r .encryptedSecret enroll.json | base64 -d; } >cred.bin
  # 4. ActivateCredential: the RSA EK's policy is PolicySecret(TPM_RH_ENDORSEMENT).
  tpm2_startauthsession --policy-session -S session.ctx
  tpm2_policysecret -S session.ctx -c e >/dev/null
  tpm2_activatecredential -c ak.ctx -C 0x81010001 -i cred.bin -o secret.bin -P session:session.ctx >/dev/null
  tpm2_flushcontext session.ctx
  flush
  post "/v1/runtimes/$(cat runtime-id)/activation" "$(jq -n --arg s "$(b64 secret.bin)" '{secret: $s}')"
  echo
  rm -f secret.bin
  ;;
attest)
  pcrs=${2:-sha256:0,1,2,3,7}
  id=$(cat runtime-id)
  # 1. A fresh session key (EC P-256) as a JWK; JCS orders the members crv, kty, x, y.
  openssl ecparam -name prime256v1 -genkey -noout -out session-key.pem
  openssl ec -in session-key.pem -pubout -outform der 2>/dev/null | tail -c 64 >session-key.xy
  x=$(head -c 32 session-key.xy | basenc --base64url | tr -d '=')
  y=$(tail -c 32 session-key.xy | basenc --base64url | tr -d '=')
  jwk=$(printf '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' "$x" "$y")
  # 2. Challenge, and the qualifying data SHA-256(nonce || SHA-256(JCS(sessionKey))).
  nonce=$(post "/v1/runtimes/$id/challenges" | jq -r .nonce)
  #    Binary digests never go through a shell variable (bash drops NUL bytes): pipe them.
  qd=$({ printf '%s' "$nonce" | base64 -d; printf '%s' "$jwk" | openssl dgst -sha256 -binary; } | openssl dgst -sha256 -binary | xxd -p -c 64)
  # 3. Quote the PCRs with the AK, qualified with that value.
  tpm2_quote -c ak.ctx -l "$pcrs" -q "$qd" -g sha256 -m quote.msg -s quote.sig -o quote.pcrs -F values >/dev/null
  flush
  # 4. The PCR values, in selection order (32 bytes each for sha256), as {"sha256": {"0": hex}}.
  bank=${pcrs%%:*}
  values=$(xxd -p -c 32 quote.pcrs | jq -R . | jq -s .)
  pcrmap=$(jq -n --arg bank "$bank" --arg list "${pcrs#*:}" --argjson v "$values" \
    '{($bank): ([$list | split(",")[]] | to_entries | map({key: .value, value: $v[.key]}) | from_entries)}')
  body=$(jq -n --arg nonce "$nonce" --arg q "$(b64 quote.msg)" --arg s "$(b64 quote.sig)" \
    --argjson pcrs "$pcrmap" --argjson key "$jwk" \
    '{nonce: $nonce, quote: $q, signature: $s, pcrs: $pcrs, sessionKey: $key}')
  post "/v1/runtimes/$id/attestations" "$body"
  echo
  ;;
*)
  echo "usage: tpm2-tools-flow.sh enroll NAME | attest [PCRS]" >&2
  exit 2
  ;;
esac
