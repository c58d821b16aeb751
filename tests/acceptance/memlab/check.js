// Load a .heapsnapshot with memlab (as `memlab analyze object-size` does) and print what
// tests/acceptance/test_memlab.py checks, as one JSON line after "RESULT ".
//   node tests/acceptance/memlab/check.js FILE
'use strict';
const {getFullHeapFromFile, PluginUtils} = require('@memlab/heap-analysis');

function describe(node) {
  const retainers = [];
  node.referrers.forEach(edge => {
    if (retainers.length < 5) {
      retainers.push({edge: String(edge.name_or_index), type: edge.type, from: edge.fromNode.name});
    }
  });
  return {
    id: node.id,
    name: node.name,
    type: node.type,
    self_size: node.self_size,
    retained_size: node.retainedSize,
    edge_count: node.edge_count,
    retainers,
  };
}

(async () => {
  const heap = await getFullHeapFromFile(process.argv[2]);
  let edges = 0;
  heap.nodes.forEach(node => {
    edges += node.edge_count;
  });
  const largest = PluginUtils.filterOutLargestObjects(heap, PluginUtils.isNodeWorthInspecting, 5);
  const result = {nodes: heap.nodes.length, edges, largest: largest.map(describe)};
  process.stdout.write('\nRESULT ' + JSON.stringify(result) + '\n');
})().catch(err => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
