// Checks minidl's ONNX export in ONNX Runtime: for each model, train it briefly, export it, and compare ONNX
// Runtime's probabilities with `minidl predict`'s on the first 100 test images (within 1e-5); a manual-mode
// model must be refused. Exit 0: agreed; 1: disagreed or failed; 77: skipped (ONNX Runtime or data missing).
// Usage: node check.js MINIDL DATA_DIR WORK_DIR
'use strict';
const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [minidl, dataDir, workDir] = process.argv.slice(2);
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log('SKIPPED: onnxruntime-node is not installed (.ci/deps installs it: npm ci --ignore-scripts in tests/onnx)');
  process.exit(77);
}
const images = ['t10k-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte'].map((f) => path.join(dataDir, f)).find(fs.existsSync);
if (!images) {
  console.log(`SKIPPED: no MNIST-format test images in ${dataDir}`);
  process.exit(77);
}

// The first n test images as float32 pixels / 255, [n, height·width], read from the IDX file.
function testImages(n) {
  let bytes = fs.readFileSync(images);
  if (images.endsWith('.gz')) bytes = zlib.gunzipSync(bytes);
  const count = bytes.readUInt32BE(4), height = bytes.readUInt32BE(8), width = bytes.readUInt32BE(12);
  n = Math.min(n, count);
  const pixels = new Float32Array(n * height * width);
  for (let i = 0; i < pixels.length; ++i) pixels[i] = bytes[16 + i] * (1 / 255);
  return { pixels, n, height, width };
}

function run(args) {
  return execFileSync(minidl, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function check(description, norm, inputShape) {
  const name = `${norm}-${inputShape}-${description.length}`;
  const checkpoint = path.join(workDir, `${name}.safetensors`), onnx = path.join(workDir, `${name}.onnx`);
  run(['train', '--model', description, '--norm', norm, '--epochs', '1', '--steps', '200', '--save', checkpoint, '--overwrite', '--data', dataDir]);
  run(['export', '--model', checkpoint, '--out', onnx]);
  const expected = run(['predict', '--model', checkpoint, '--first', '100', '--json', '--data', dataDir])
    .trim().split('\n').map((line) => JSON.parse(line).probabilities);
  const { pixels, n, height, width } = testImages(100);
  const session = await ort.InferenceSession.create(onnx);
  const dims = inputShape === 'flat' ? [n, height * width] : [n, height, width, 1];
  const result = await session.run({ input: new ort.Tensor('float32', pixels, dims) });
  const got = result.probabilities;
  const classes = got.dims[1];
  let worst = 0;
  for (let i = 0; i < n; ++i)
    for (let c = 0; c < classes; ++c) worst = Math.max(worst, Math.abs(got.data[i * classes + c] - expected[i][c]));
  console.log(`${description} (${norm}): ${n} images, largest difference ${worst.toExponential(2)}`);
  if (got.dims[0] !== n || expected.length !== n || !(worst <= 1e-5)) {
    console.log('FAILED: ONNX Runtime and minidl predict disagree');
    process.exitCode = 1;
  }
}

(async () => {
  fs.mkdirSync(workDir, { recursive: true });
  await check('dense:32,relu,bn,dense:10,softmax', 'running', 'flat');
  await check('dense:32,relu,dropout:0.2,bn,dense:16,relu,bn,dense:10,softmax', 'batchwise', 'flat');
  // Convolutional models take [N, 28, 28, 1] (channels last); the export transposes to ONNX's NCHW and back.
  await check('conv:8x3,bn,relu,maxpool:2,conv:16x3,bn,relu,maxpool:2,flatten,dense:10,softmax', 'running', 'images');
  await check('conv:8x5:padding=same:strides=2,bn,relu,avgpool:3:strides=2:padding=same,conv:12x3:bias=0,gap,dense:10,softmax',
    'running', 'images');
  // The normalisation variants: layer, group and RMS normalisation become ReduceMean graphs; ghost and renorm
  // batch normalisation have the plain inference form.
  await check('dense:32,relu,bn,dense:10,softmax', 'layer', 'flat');
  await check('conv:32x3,bn,relu,maxpool:2,conv:16x3,layernorm,relu,gap,dense:10,softmax', 'group', 'images');
  await check('conv:8x3,groupnorm:4,relu,maxpool:2,flatten,dense:16,bn,dense:10,softmax', 'renorm', 'images');
  await check('dense:32,relu,bn,dense:10,softmax', 'ghost', 'flat');
  // RMSNormalization: --norm rms, and the grammar's rmsnorm on images (over the channels of every position).
  await check('dense:32,relu,bn,dense:10,softmax', 'rms', 'flat');
  await check('conv:8x3,rmsnorm,relu,maxpool:2,flatten,dense:16,rmsnorm:epsilon=0.001,dense:10,softmax', 'none', 'images');
  // The activations: tanh and LeakyReLU are ONNX operators; GELU is built from Erf (opset 13 has no Gelu), SiLU
  // from Sigmoid and Mul.
  await check('dense:32,tanh,bn,dense:24,gelu,dense:16,silu,dense:16,leaky_relu:alpha=0.1,dense:10,softmax', 'running', 'flat');
  await check('conv:8x3,bn,gelu,maxpool:2,conv:8x3,leaky_relu,gap,dense:10,softmax', 'running', 'images');
  // Residual blocks: each an ONNX Add of its layers' output and its shortcut's — the identity, or a projection
  // (a strided 1x1 convolution and the block's normalisation; a dense between vectors).
  await check('conv:8x3:padding=same,bn,relu,residual(conv:8x3:padding=same,bn,relu,conv:8x3:padding=same,bn),relu,' +
    'residual(conv:16x3:strides=2:padding=same,bn,relu,conv:16x3:padding=same,bn),relu,gap,dense:10,softmax', 'running', 'images');
  await check('dense:32,relu,2*residual(dense:32,relu,bn),residual(dense:16,relu),dense:10,softmax', 'none', 'flat');
  const checkpoint = path.join(workDir, 'manual.safetensors');
  run(['train', '--model', 'dense:16,relu,bn,dense:10,softmax', '--norm', 'manual', '--epochs', '1', '--steps', '5',
    '--save', checkpoint, '--overwrite', '--data', dataDir]);
  const refused = spawnSync(minidl, ['export', '--model', checkpoint, '--out', path.join(workDir, 'manual.onnx')], { encoding: 'utf8' });
  if (refused.status !== 1 || !refused.stderr.includes('no moving statistics')) {
    console.log(`FAILED: exporting a manual-mode model should be refused; got status ${refused.status}: ${refused.stderr}`);
    process.exitCode = 1;
  }
})().catch((e) => {
  console.log(`FAILED: ${e.stack || e}`);
  process.exitCode = 1;
});
