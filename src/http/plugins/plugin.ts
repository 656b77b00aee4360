/**
 * Named, non-encapsulated plugins without the fastify-plugin package: Fastify honours the
 * same symbols fastify-plugin sets. `skip-override` makes the plugin's hooks and decorators
 * apply to the parent, i.e. to every route registered after it; `plugin-meta` names it so
 * that later plugins can declare it as a dependency (`app.hasPlugin(name)`).
 */
export function namedGlobalPlugin<F extends object>(
  name: string,
  fn: F,
  dependencies: readonly string[] = [],
): F {
  return Object.assign(fn, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: name,
    [Symbol.for('plugin-meta')]: { name, fastify: '5.x', dependencies: [...dependencies] },
  });
}
