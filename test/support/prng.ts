/** A seeded PRNG for tests (mulberry32): the one `npm run fuzz` draws from (scripts/lib/fuzz-rng.ts). */
export { prng, type Rng as TestRng } from '../../scripts/lib/fuzz-rng.js';
