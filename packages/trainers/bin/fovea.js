#!/usr/bin/env node
// The `fovea` command's entry point. A committed file (not dist/cli.js itself) so npm links the
// bin at install time, before `prepare` has compiled dist/; it runs the compiled CLI.
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
