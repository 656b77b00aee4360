/**
 * A view of an object with some methods replaced. The other members are read from the
 * object itself and its methods run with the object as `this`, so a class with `#` members
 * can be wrapped (`Object.create(target)` cannot: a `#` member is not inherited).
 */
export function overlay<T extends object>(target: T, overrides: Partial<T>): T {
  const own: Partial<Record<PropertyKey, unknown>> = overrides;
  return new Proxy(target, {
    get(t, key) {
      if (Object.hasOwn(own, key)) return own[key];
      const value: unknown = Reflect.get(t, key, t);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]): unknown => Reflect.apply(value, t, args) as unknown;
    },
  });
}
