#!/usr/bin/env node
// Entry point: loads the TypeScript sources through tsx's ESM loader, so there is no build
// step that could drift from the source.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
