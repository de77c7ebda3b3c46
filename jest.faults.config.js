/** `npm run test:faults`: kills workers, restarts the server, throttles S3. Minutes, not seconds. */
const base = require('./jest.config');

module.exports = { ...base, roots: ['<rootDir>/test/faults'], testPathIgnorePatterns: [], testTimeout: 600000 };
