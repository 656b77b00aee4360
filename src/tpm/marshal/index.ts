/** TPM 2.0 structures: bounds-checked marshal/unmarshal, names, keys and signatures. */
export * from './attest.js';
export * from './buffer.js';
export * from './constants.js';
export * from './credential.js';
export * from './digests.js';
export * from './keys.js';
export * from './name.js';
export * from './nv.js';
export * from './pcr-selection.js';
export * from './public.js';
export * from './signature.js';
export * from './tpm2b.js';
export * from './verify.js';
