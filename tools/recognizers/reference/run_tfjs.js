#!/usr/bin/env node
// Run a TF.js graph model with @tensorflow/tfjs (pure JS CPU backend) on
// inputs from a .npy file and write the chosen output to another .npy file.
// This is the reference the ONNX conversion is checked against.
//
//   node run_tfjs.js <model.json> <input.npy (float32 NHWC)> <output tensor> <out.npy>
//
// The model is loaded with tf.io.fromMemory (topology + weight specs + the
// concatenated .bin bytes), so no file:// handler or tfjs-node is needed.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

// Minimal .npy (format 1.0/2.0) reader for little-endian float32 C-order arrays.
function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${file}: not .npy`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True")) {
    throw new Error(`${file}: need little-endian float32 C-order, got ${header}`);
  }
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const off = start + hlen;
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + buf.length));
  return { shape, data };
}

// Minimal .npy writer (format 1.0, float32).
function writeNpy(file, shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  const [modelJson, inputNpy, outputName, outNpy] = process.argv.slice(2);
  if (!outNpy) {
    console.error('usage: node run_tfjs.js <model.json> <input.npy> <output tensor> <out.npy>');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  const model = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const dir = path.dirname(modelJson);
  const weightSpecs = [];
  const chunks = [];
  for (const group of model.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) chunks.push(fs.readFileSync(path.join(dir, p)));
  }
  const bin = Buffer.concat(chunks);
  const weightData = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length);
  const graph = await tf.loadGraphModel(tf.io.fromMemory({ modelTopology: model.modelTopology, weightSpecs, weightData }));
  const { shape, data } = readNpy(inputNpy);
  const x = tf.tensor(data, shape, 'float32');
  const y = graph.execute(x, outputName);
  const out = y.dataSync();
  writeNpy(outNpy, y.shape, Float32Array.from(out));
  console.log(`${path.basename(modelJson)} -> ${outputName} ${JSON.stringify(y.shape)} (tfjs ${tf.version.tfjs}, backend ${tf.getBackend()})`);
}

main().catch((e) => { console.error(e); process.exit(1); });
