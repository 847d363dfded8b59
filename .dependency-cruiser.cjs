/**
 * The directions STYLE.md names, checked on every `npm test` (test/unit/dependency-rules.test.ts)
 * and by `npm run deps`. A family folder (telematics/, store/, events/channels/) holds one folder
 * per replaceable part; only the composition root and the family's registry name those parts.
 */
const CONCRETE = '^src/(telematics/[^/]+/|store/(sqlite|postgres)/|events/channels/[^/]+/)';

module.exports = {
  forbidden: [
    {
      name: 'adapters-translate-only',
      comment: 'An adapter gets what it needs through its AdapterContext: never the store, the config or a service.',
      severity: 'error',
      from: { path: '^src/telematics/' },
      to: { path: '^src/(store/|config\\.ts$|services/|api/|app\\.ts$|cli/|events/|console/|lib/secrets\\.ts$)' },
    },
    {
      name: 'domain-imports-nothing-of-ours',
      comment: 'The domain (vehicle, commands, state and problem catalogues, events) depends on nothing else of fleetgate.',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { path: '^src/', pathNot: '^src/domain/' },
    },
    {
      name: 'only-root-and-registries-name-concrete-parts',
      comment:
        'Only src/app.ts (the composition root) and the registries import a concrete adapter, store engine or delivery channel. A brand\'s simulator (src/sim/) speaks its protocol and may use its codec.',
      severity: 'error',
      from: {
        path: '^src/',
        pathNot: '^src/(app\\.ts$|telematics/|store/|events/channels/|sim/)',
      },
      to: { path: CONCRETE },
    },
    {
      name: 'parts-do-not-know-their-siblings',
      comment: 'One adapter (or engine, or channel) never imports another.',
      severity: 'error',
      from: { path: '^src/(telematics|store|events/channels)/([^/]+)/' },
      to: { path: CONCRETE, pathNot: '^src/$1/$2/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^src/console/web/' },
  },
};
