/**
 * Servers with the operator auth hook over fake tokens, for the unit tests of routes and
 * plugins behind it (one setup instead of one copy per test file):
 *
 *   const apps = operatorApps();
 *   afterEach(() => apps.closeAll());
 *   const { app, tokens, bearer } = await apps.make();
 */
import { createFakeOperatorTokens } from '../../operators/token-store.memory.js';
import type { OperatorTokens } from '../../operators/tokens.js';
import type { Role } from '../../operators/roles.js';
import { createServer, type App, type AppOptions } from '../app.js';
import { operatorAuth, type OperatorAuthOptions } from '../plugins/auth.js';

export interface OperatorApp {
  readonly app: App;
  readonly tokens: OperatorTokens;
  /** The `authorization` header of a new token of `role` for `actor`. */
  readonly bearer: (role: Role, actor: string) => Promise<{ authorization: string }>;
}

export interface OperatorApps {
  /** createServer(options), then operatorAuth over fresh fake tokens (and `auth`). */
  make(options?: AppOptions, auth?: Omit<OperatorAuthOptions, 'tokens'>): Promise<OperatorApp>;
  closeAll(): Promise<void>;
}

export function operatorApps(): OperatorApps {
  const open: App[] = [];
  return {
    make: async (options = {}, auth = {}) => {
      const tokens = createFakeOperatorTokens();
      const app = createServer(options);
      open.push(app);
      await app.register(operatorAuth, { ...auth, tokens });
      return {
        app,
        tokens,
        bearer: async (role, actor) => ({
          authorization: `Bearer ${(await tokens.create({ role, actor })).token}`,
        }),
      };
    },
    closeAll: async () => {
      for (const app of open.splice(0)) await app.close();
    },
  };
}
