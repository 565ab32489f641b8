// Checks minidl's ONNX export of models trained on tables in ONNX Runtime: scikit-learn's diabetes set as a
// regression with a normalize layer (Sub and Div nodes) and its breast-cancer set as a binary classifier with a
// sigmoid output. For each: train briefly, export, and compare ONNX Runtime's outputs with `minidl predict`'s on
// the test CSV (within 1e-5). Exit 0: agreed; 1: disagreed or failed; 77: skipped (ONNX Runtime or
// scikit-learn missing). Usage: node check_tables.js MINIDL SKLEARN_CSV_SCRIPT WORK_DIR
'use strict';
const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const [minidl, csvScript, workDir] = process.argv.slice(2);
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log('SKIPPED: onnxruntime-node is not installed (.ci/deps installs it: npm ci --ignore-scripts in tests/onnx)');
  process.exit(77);
}
fs.mkdirSync(workDir, { recursive: true });
// Debian's python3-sklearn belongs to Debian's python3, which another python3 earlier in PATH may hide.
const python = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const written = spawnSync(python, [csvScript, workDir], { encoding: 'utf8' });
if (written.status === 77 || written.error) {
  console.log((written.stdout || '').trim() || 'SKIPPED: python3 is not installed');
  process.exit(77);
}
if (written.status !== 0) {
  console.log(`FAILED: ${csvScript}: ${written.stderr}`);
  process.exit(1);
}

function run(args) {
  return execFileSync(minidl, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// The feature columns of a CSV with a header, every column but `label`, as float32 rows.
function features(file, label) {
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  const header = lines[0].split(',');
  const keep = header.map((name, i) => i).filter((i) => header[i] !== label);
  const rows = lines.slice(1).map((line) => line.split(','));
  const data = new Float32Array(rows.length * keep.length);
  rows.forEach((row, r) => keep.forEach((c, k) => { data[r * keep.length + k] = Number(row[c]); }));
  return { data, n: rows.length, width: keep.length };
}

async function check(name, label, trainArgs, output, field) {
  const checkpoint = path.join(workDir, `${name}.safetensors`), onnx = path.join(workDir, `${name}.onnx`);
  const train = path.join(workDir, `${name}_train.csv`), test = path.join(workDir, `${name}_test.csv`);
  run(['train', '--data', train, '--test', test, '--label', label, '--epochs', '3', '--save', checkpoint, '--overwrite', ...trainArgs]);
  run(['export', '--model', checkpoint, '--out', onnx]);
  const expected = run(['predict', '--model', checkpoint, '--data', test, '--json'])
    .trim().split('\n').map((line) => JSON.parse(line)[field]);
  const { data, n, width } = features(test, label);
  const session = await ort.InferenceSession.create(onnx);
  const got = (await session.run({ input: new ort.Tensor('float32', data, [n, width]) }))[output];
  const columns = got.dims[1];
  let worst = 0;
  for (let i = 0; i < n; ++i)
    for (let c = 0; c < columns; ++c) {
      const want = field === 'values' ? expected[i][c] : expected[i][1];  // binary: predict shows [P(0), P(1)]
      worst = Math.max(worst, Math.abs(got.data[i * columns + c] - want) / Math.max(1, Math.abs(want)));
    }
  console.log(`${name} (${trainArgs.join(' ')}): ${n} rows, largest relative difference ${worst.toExponential(2)}`);
  if (got.dims[0] !== n || expected.length !== n || !(worst <= 1e-5)) {
    console.log('FAILED: ONNX Runtime and minidl predict disagree');
    process.exitCode = 1;
  }
}

(async () => {
  await check('diabetes', 'target', ['--standardize', '--lr', '0.01'], 'values', 'values');
  await check('breast_cancer', 'diagnosis', ['--model', 'normalize,dense:16,relu,bn,dense:1,sigmoid'], 'probabilities',
    'probabilities');
})().catch((e) => {
  console.log(`FAILED: ${e.stack || e}`);
  process.exitCode = 1;
});
