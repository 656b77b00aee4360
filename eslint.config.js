// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const hardwareModules = [
  {
    name: 'pkcs11js',
    message: 'Only the PKCS#11 adapter (src/keys/*.pkcs11.ts) may import pkcs11js.',
  },
  { name: 'classic-level', message: 'Only store adapters (*.level.ts) may import classic-level.' },
];

const workerFromString = {
  selector: "NewExpression[callee.name='Worker'] Property[key.name='eval']",
  message: 'A worker runs a real source file (src/shared/worker.ts), never a string.',
};

// One kind of private member: ECMAScript `#`, private at run time too. A constructor has no `#`
// form, so `private constructor` stays allowed. `Object.create`/`Object.assign` cannot reach a `#`
// member: wrap such an object with `overlay()` (src/shared/overlay.ts).
const privateKeyword = {
  selector:
    ":matches(PropertyDefinition, AccessorProperty, TSAbstractPropertyDefinition, TSAbstractMethodDefinition, TSParameterProperty, MethodDefinition[kind!='constructor'])[accessibility='private']",
  message: 'Use an ECMAScript private member (#name), not the TypeScript `private` keyword.',
};

export default tseslint.config(
  { ignores: ['dist/', 'var/', 'native/build/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      // Every line that runs is seen by the type checker and the linter: no code from strings.
      'no-eval': 'error',
      'no-new-func': 'error',
      '@typescript-eslint/no-implied-eval': 'error',
      'no-restricted-syntax': ['error', workerFromString, privateKeyword],
    },
  },
  {
    // Ports and adapters: services see ports; only adapter files touch hardware modules,
    // and nothing outside src/http imports src/http.
    files: ['src/**/*.ts', 'attester/**/*.ts'],
    ignores: [
      'src/**/*.pkcs11.ts',
      'src/**/*.level.ts',
      'src/**/*.test.ts',
      'src/http/**',
      'src/main.ts',
      'src/cli.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: hardwareModules,
          patterns: [
            {
              group: ['**/http/**', '**/http/*'],
              message: 'Nothing imports src/http (http -> services -> ports <- adapters).',
            },
            {
              group: ['**/native/build/**'],
              message: 'Only src/tpm/tpm.native.ts loads the addon.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['attester/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: hardwareModules,
          patterns: [
            {
              group: [
                '**/src/http/**',
                '**/src/grants/**',
                '**/src/audit/**',
                '**/src/keys/**',
                '**/src/policy/**',
              ],
              message:
                'The attester reuses src/tpm and src/shared only; it never imports the appliance services.',
            },
          ],
        },
      ],
    },
  },
  {
    // The independent tlog-tiles client: written from the C2SP texts, sharing no server code.
    files: ['test/audit/tlog-client/**/*.ts'],
    ignores: ['test/audit/tlog-client/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/src/**', '**/test/**', '../**'],
              message: 'The tlog-tiles client imports nothing from the server or the test rig.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
