/** `npm run test:kohya`: trains with real sd-scripts on CPU (scripts/setup-kohya.sh installs it). Minutes. */
const base = require('./jest.config');

module.exports = { ...base, roots: ['<rootDir>/test/kohya'], testPathIgnorePatterns: [], testTimeout: 1200000 };
