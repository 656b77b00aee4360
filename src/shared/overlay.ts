/**
 * A view of an object with some methods replaced. The other members are read from the
 * object itself and its methods run with the object as `this`, so a class with `#` members
 * can be wrapped (`Object.create(target)` cannot: a `#` member is not inherited).
 *
 * A method read through the view is one forwarder per key, made on the first read and kept
 * while the target's member stays the same function: the wrapped audit store and anchor sit
 * on the hot path, and `view.m === view.m` holds as it does on the target.
 */
export function overlay<T extends object>(target: T, overrides: Partial<T>): T {
  const own: Partial<Record<PropertyKey, unknown>> = overrides;
  type Method = (...args: unknown[]) => unknown;
  const forwarders = new Map<PropertyKey, { readonly method: Method; readonly forward: Method }>();
  return new Proxy(target, {
    get(t, key) {
      if (Object.hasOwn(own, key)) return own[key];
      const value: unknown = Reflect.get(t, key, t);
      if (typeof value !== 'function') return value;
      const method = value as Method;
      const cached = forwarders.get(key);
      if (cached?.method === method) return cached.forward;
      const forward: Method = (...args) => Reflect.apply(method, t, args);
      forwarders.set(key, { method, forward });
      return forward;
    },
  });
}
