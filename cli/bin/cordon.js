#!/usr/bin/env node
// Entry point of the `cordon` command; the code lives in dist/ after `npm run build`.
import { runCli } from '../dist/index.js';

process.exitCode = await runCli(process.argv.slice(2));
