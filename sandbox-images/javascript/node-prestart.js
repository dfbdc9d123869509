'use strict';
// Node.js started in a warm sandbox before its run is known, so a run does not wait the 70 ms
// that Node.js takes to start here. It has nothing of any run until the launcher writes the
// run's program arguments and environment as one line of JSON to the pipe named by argv[2]; then
// it runs the program as `node <entry> <args…>` would, once, in this process.
// The sandbox is destroyed after that run, as every sandbox is.
//
// Node.js reads some variables only while it starts (NODE_OPTIONS, locale, time zone), so the
// executor sends a run that sets one of them to a cold sandbox instead.

const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');

/** Reads one line from the pipe; each read blocks until the launcher writes more. */
function readLine(pipePath) {
  const fd = fs.openSync(pipePath, 'r');
  const chunks = [];
  const buffer = Buffer.alloc(65536);
  for (;;) {
    const length = fs.readSync(fd, buffer, 0, buffer.length, null);
    if (length === 0) break;
    const chunk = buffer.subarray(0, length);
    chunks.push(Buffer.from(chunk));
    if (chunk.includes(10)) break;
  }
  fs.closeSync(fd);
  return Buffer.concat(chunks).toString('utf8');
}

const startPipe = process.argv[2];
const text = readLine(startPipe);
fs.unlinkSync(startPipe);

let start;
try {
  start = JSON.parse(text);
} catch {
  process.stderr.write('node-prestart: the start message is not JSON\n');
  process.exit(125);
}

for (const entry of start.env) {
  const at = entry.indexOf('=');
  process.env[entry.slice(0, at)] = entry.slice(at + 1);
}
process.argv = [process.execPath, path.resolve(start.argv[0]), ...start.argv.slice(1)];
delete require.cache[__filename];

// From the event loop rather than from here, so the program's stack traces end in Node.js's own
// frames as they do under `node <entry>`, with none of this file's.
setImmediate(Module.runMain);
