/** The audit domain's test checkpoint signer (src/audit/testing.ts), for the tests under test/. */
export { testSigner } from '../../src/audit/testing.js';
