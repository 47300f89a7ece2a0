// ESLint: rules that catch faults the TypeScript compiler lets through, not matters of taste
// (prettier owns layout; tsc already reports unused names, missing returns and fallthrough).
// Type-aware: the rules about promises need the types, so every file is read through
// tsconfig.test.json, which covers the sources, the scripts and the tests in one program.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      // Sources import each other as './x.js' (NodeNext); the file on disk is x.ts.
      'import-x/extensions': ['.ts', '.js', '.mjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.json', '.node'], extensionAlias: { '.js': ['.ts', '.js'] } })],
    },
    rules: {
      // A cycle makes load order decide what is undefined at import time, and tangles layers.
      'import-x/no-cycle': 'error',
      'import-x/no-self-import': 'error',

      // Promises: a forgotten await loses the error (and an unhandled rejection ends the
      // gateway, docs/operations.md); an async callback where a void one is expected is never awaited.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
      '@typescript-eslint/only-throw-error': 'error',

      // Values that print as '[object Object]' in a log line or an error message.
      '@typescript-eslint/no-base-to-string': 'error',
      // A new member of a union (a reason code, a fault kind) must be handled where it is switched on.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-for-in-array': 'error',
      '@typescript-eslint/no-implied-eval': 'error',
      '@typescript-eslint/no-array-delete': 'error',
      // Spreading a promise, a function or a class instance into an object; strings split by code point on purpose.
      '@typescript-eslint/no-misused-spread': ['error', { allow: ['string'] }],
      '@typescript-eslint/no-duplicate-type-constituents': 'error',
      'no-self-compare': 'error',
      eqeqeq: ['error', 'smart'],

      // tsc reports these already (noUnusedLocals, noUnusedParameters).
      '@typescript-eslint/no-unused-vars': 'off',
      'no-undef': 'off',
    },
  },
  {
    // Plain JS run by Node before anything is compiled (scripts/setup.mjs) and this file.
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
  },
);
