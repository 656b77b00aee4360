# grantor appliance image: Debian 12 + Node 20, installed through the same scripts that
# ./scripts/start and ./scripts/test use (scripts/lib.sh), run as a non-root user.
#
# Production configuration is passed at run time:
#   docker run --device /dev/tpmrm0 \
#     -v /usr/lib/vendor-pkcs11:/usr/lib/vendor-pkcs11:ro -v grantor-state:/var/lib/grantor \
#     -e GRANTOR_TPM_TCTI=device:/dev/tpmrm0 \
#     -e GRANTOR_PKCS11_MODULE=/usr/lib/vendor-pkcs11/libvendor.so \
#     -e GRANTOR_HSM_TOKEN_LABEL=grantor -e GRANTOR_HSM_PIN_FILE=/run/secrets/hsm-pin \
#     -v /etc/grantor/tls:/etc/grantor/tls:ro \
#     -e GRANTOR_TLS_CERT=/etc/grantor/tls/server.pem -e GRANTOR_TLS_KEY=/etc/grantor/tls/server-key.pem \
#     -e GRANTOR_OPERATOR_CA=/etc/grantor/tls/operator-ca.pem \
#     grantor
# A listener on a non-loopback address must have TLS (the config refuses plain HTTP there).
FROM node:20-bookworm-slim

WORKDIR /opt/grantor
COPY package.json package-lock.json ./
COPY native ./native
COPY scripts ./scripts
# apt packages (tpm2-tss, tpm2-tools, swtpm for diagnostics, softhsm2 for the simulated
# setup), npm ci and the addon build: the same function the test script runs.
RUN bash -c 'source scripts/lib.sh && ensure_all' \
 && rm -rf /var/lib/apt/lists/*
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY attester ./attester
COPY examples ./examples
# What the appliance reads at run time by default: the Cedar policy set and schema, the
# reference policy examples and the EK CA bundle of the TPM vendors.
COPY policies ./policies
COPY reference-policies ./reference-policies
COPY trust ./trust
RUN npm run build && npm prune --omit=dev

RUN groupadd --system grantor && useradd --system --gid grantor --home /var/lib/grantor grantor \
 && mkdir -p /var/lib/grantor && chown grantor:grantor /var/lib/grantor
# /dev/tpmrm0 is group "tss" on Debian hosts; pass --group-add with the host's gid.
USER grantor
ENV GRANTOR_STATE_DIR=/var/lib/grantor \
    GRANTOR_LISTEN=0.0.0.0:8443 \
    NODE_ENV=production
EXPOSE 8443
# scripts/docker-tree materialises this file's COPY list and runs this command outside
# Docker (test/appliance/docker-tree.test.ts).
CMD ["node", "dist/src/main.js"]
