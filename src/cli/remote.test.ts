import { describe, expect, it } from 'vitest';
import { errorOf } from './remote.js';

describe('errorOf: the appliance refusal as an error', () => {
  it('keeps a code of the table, naming the status', () => {
    const e = errorOf({ status: 403, body: { error: { code: 'forbidden', message: 'no' } } });
    expect([e.code, e.message]).toEqual(['forbidden', 'no (HTTP 403)']);
  });

  it('answers a code it does not know as remote_error, naming the code', () => {
    const e = errorOf({ status: 409, body: { error: { code: 'newer_code', message: 'no' } } });
    expect([e.code, e.message]).toEqual(['remote_error', 'newer_code: no (HTTP 409)']);
  });

  it('answers a body without a code as remote_error', () => {
    const e = errorOf({ status: 502, body: null });
    expect([e.code, e.message]).toEqual(['remote_error', 'the appliance refused (HTTP 502)']);
  });
});
