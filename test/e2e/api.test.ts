import { Harness } from '../helpers/harness.js';
import { apiScenarios } from './api.scenarios.js';

// The embedded default (SPEC §7): SQLite in a temp dir and the in-process broker.
apiScenarios('embedded defaults (SQLite + embedded broker)', (overrides) => Harness.start(overrides));
