#!/usr/bin/env node
/** Entry point of the native-messaging host that the launcher script runs (kept apart from the CLI so it loads nothing heavy). */
import { runRelay } from './relay.js';

const code = await runRelay(process.argv.slice(2));
// Exit once stdout has flushed (asynchronous for pipes on macOS); a stdin the browser keeps open must not hold the process.
process.stdout.write('', () => process.exit(code));
