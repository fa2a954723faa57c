'use strict';

// ${shards:count}: how many ingest shards the `symbols` param makes (docs/ARCHITECTURE.md §8).
//
// The supervisor splits the symbols into shards at run time (tradelake/shards.py); the one
// number the template needs at package time is the ingest function's reserved concurrency,
// which must equal the shard count. This is the same function as shard_count() in
// tradelake/shards.py, line for line: rendezvous hashing (the shard i < count with the smallest
// sha256("<i>:<symbol>") hex digest), count = the smallest value >= ceil(n / size) at which no
// shard holds more than `size` symbols. tests/infra/test_shards_plugin.py checks they agree.
// Local and offline: it reads two params and hashes, nothing else.

const crypto = require('crypto');

function shardOf(symbol, count) {
  let best = 0;
  let bestDigest = null;
  for (let i = 0; i < count; i += 1) {
    const digest = crypto.createHash('sha256').update(`${i}:${symbol}`, 'utf8').digest('hex');
    if (bestDigest === null || digest < bestDigest) {
      best = i;
      bestDigest = digest;
    }
  }
  return best;
}

function shardCount(symbols, size) {
  const unique = [...new Set(symbols)];
  let count = Math.max(1, Math.ceil(unique.length / size));
  for (;;) {
    const sizes = new Array(count).fill(0);
    for (const symbol of unique) sizes[shardOf(symbol, count)] += 1;
    if (Math.max(...sizes) <= size) return count;
    count += 1;
  }
}

function parseSymbols(text) {
  return String(text)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

class Shards {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {};
    this.configurationVariablesSources = {
      shards: {
        resolve: async ({ address, resolveVariable }) => {
          if (address !== 'count') {
            throw new serverless.classes.Error(`\${shards:${address}}: only \${shards:count}`);
          }
          const symbols = parseSymbols(await resolveVariable('param:symbols'));
          const size = Number(await resolveVariable('param:symbolsPerShard'));
          if (symbols.length === 0 || !Number.isInteger(size) || size < 1 || size > 20) {
            throw new serverless.classes.Error(
              'the symbols param must list at least one symbol, symbolsPerShard be 1 to 20'
            );
          }
          return { value: shardCount(symbols, size) };
        },
      },
    };
  }
}

module.exports = Shards;
module.exports.shardCount = shardCount;
module.exports.parseSymbols = parseSymbols;
