#!/usr/bin/env node
// Entry point of the `cordon` command; the code lives in dist/ after `npm run build`.
import { runCli } from '../dist/index.js';

// A reader that went away, as `cordon run prog | head` does, ends the command
// quietly like any Unix filter; exiting also cancels a run in progress.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

process.exitCode = await runCli(process.argv.slice(2));
